// Package registry pushes Flint's images to, and pulls them from, any OCI
// registry, through containerd's remotes/docker resolver — the code
// containerd and ctr pull with, already in Feather's module graph — with
// docker config.json credentials, plain HTTP on request, progress, and
// retries that resume: a push skips the blobs the registry already has, a
// pull keeps partial downloads in its content store and continues them with
// Range requests.
package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/containerd/platforms"
	"github.com/distribution/reference"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/semaphore"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/progress"
)

// Options configure a push or pull.
type Options struct {
	// PlainHTTP talks HTTP instead of HTTPS (a registry on localhost).
	PlainHTTP bool
	// Credentials returns the username and secret for a registry host;
	// nil: anonymous.
	Credentials func(host string) (user, secret string, err error)
	// Progress shows the transfers; nil shows none.
	Progress *progress.Bars
	// Retries is how many times a failed transfer is tried again, after
	// Backoff, doubled each time (1s when 0). Refusals (401, 403, 404, bad
	// input) are not retried.
	Retries int
	Backoff time.Duration
	// Platform picks the manifest of a multi-platform image on pull;
	// linux/amd64 when nil.
	Platform platforms.MatchComparer
	// Client is the HTTP client; http.DefaultClient's transport when nil.
	Client *http.Client
}

func (o Options) resolver() remotes.Resolver {
	client := o.Client
	if client == nil {
		client = &http.Client{Transport: http.DefaultTransport}
	}
	authOpts := []docker.AuthorizerOpt{docker.WithAuthClient(client)}
	if o.Credentials != nil {
		authOpts = append(authOpts, docker.WithAuthCreds(o.Credentials))
	}
	hostOpts := []docker.RegistryOpt{docker.WithAuthorizer(docker.NewDockerAuthorizer(authOpts...)), docker.WithClient(client)}
	if o.PlainHTTP {
		hostOpts = append(hostOpts, docker.WithPlainHTTP(docker.MatchAllHosts))
	}
	return docker.NewResolver(docker.ResolverOptions{Hosts: docker.ConfigureDefaultRegistries(hostOpts...)})
}

// retry runs try until it succeeds, fails for good, or o.Retries is spent.
func (o Options) retry(ctx context.Context, what string, try func() error) error {
	wait := o.Backoff
	if wait == 0 {
		wait = time.Second
	}
	for attempt := 0; ; attempt++ {
		err := try()
		if err == nil || attempt >= o.Retries || !transient(ctx, err) {
			return err
		}
		log.G(ctx).WithError(err).Warnf("%s failed, trying again in %s (%d of %d)", what, wait, attempt+1, o.Retries)
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// transient reports whether err may go away on its own: not a refusal,
// not bad input, not a cancellation.
func transient(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, docker.ErrInvalidAuthorization) || errdefs.IsInvalidArgument(err) ||
		errdefs.IsNotFound(err) || errdefs.IsFailedPrecondition(err) || errdefs.IsDataLoss(err) {
		return false
	}
	var us remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &us) {
		return us.StatusCode >= 500 || us.StatusCode == http.StatusTooManyRequests || us.StatusCode == http.StatusRequestTimeout
	}
	return true
}

// explain turns the resolver's errors into ones that say what to do.
func explain(err error, ref string) error {
	if err == nil {
		return nil
	}
	host := ref
	if named, perr := reference.ParseNormalizedNamed(ref); perr == nil {
		host = reference.Domain(named)
	}
	var us remoteerrors.ErrUnexpectedStatus
	status := 0
	if errors.As(err, &us) {
		status = us.StatusCode
	}
	switch {
	case status == http.StatusUnauthorized || errors.Is(err, docker.ErrInvalidAuthorization):
		return fmt.Errorf("registry %s refused access (401 Unauthorized): log in (docker login %s) so that the docker config.json holds credentials for it, or check them: %w: %w",
			host, host, err, errdefs.ErrUnauthenticated)
	case status == http.StatusForbidden:
		return fmt.Errorf("registry %s denied access (403 Forbidden): the credentials lack permission for %s: %w: %w", host, ref, err, errdefs.ErrPermissionDenied)
	case status == http.StatusNotFound || errdefs.IsNotFound(err):
		return fmt.Errorf("%s: not found in the registry: %w: %w", ref, err, errdefs.ErrNotFound)
	case strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("registry %s speaks plain HTTP: add --plain-http: %w", host, err)
	}
	return err
}

// Push pushes img to ref (e.g. registry.example:5000/app:v1). Blobs the
// registry has are skipped, so a push that failed half way continues where
// it stopped when run again.
func Push(ctx context.Context, img image.Image, ref string, o Options) error {
	name, err := image.NormalizeRef(ref)
	if err != nil {
		return err
	}
	c, err := image.Read(ctx, img)
	if err != nil {
		return err
	}
	blobs := image.Blobs(c, img)
	t := newTracker(o.Progress, blobs, c)
	provider := &countingProvider{Provider: img.Blobs, t: t}
	err = o.retry(ctx, "push", func() error {
		pusher, err := o.resolver().Pusher(ctx, name)
		if err != nil {
			return err
		}
		return remotes.PushContent(ctx, pusher, img.Manifest, provider, semaphore.NewWeighted(3), platforms.All, nil)
	})
	t.finish(err)
	if err != nil {
		return explain(fmt.Errorf("push %s: %w", name, err), name)
	}
	return nil
}

// Pull fetches ref into store and returns the image: for a multi-platform
// image, the manifest for o.Platform. Blobs store has are not fetched
// again, and a partial download left by a failed pull is continued.
func Pull(ctx context.Context, ref string, store content.Store, o Options) (image.Image, error) {
	name, err := image.NormalizeRef(ref)
	if err != nil {
		return image.Image{}, err
	}
	platform := o.Platform
	if platform == nil {
		platform = platforms.Only(ocispec.Platform{OS: "linux", Architecture: "amd64"})
	}
	var img image.Image
	var t *tracker
	err = o.retry(ctx, "pull", func() error {
		r := o.resolver()
		_, desc, err := r.Resolve(ctx, name)
		if err != nil {
			return err
		}
		fetcher, err := r.Fetcher(ctx, name)
		if err != nil {
			return err
		}
		fp := fetchingProvider{store: store, fetcher: fetcher}
		md, err := image.ResolveManifest(ctx, fp, desc, platform)
		if err != nil {
			return err
		}
		img = image.Image{Name: name, Manifest: md, Blobs: fp}
		c, err := image.Read(ctx, img)
		if err != nil {
			return err
		}
		if t == nil {
			t = newTracker(o.Progress, c.Manifest.Layers, c)
		}
		cf := &countingFetcher{Fetcher: fetcher, t: t}
		h := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
			if err := remotes.Fetch(ctx, store, cf, d); err != nil && !errdefs.IsAlreadyExists(err) {
				return nil, err
			}
			return nil, nil
		})
		return images.Dispatch(ctx, h, semaphore.NewWeighted(3), c.Manifest.Layers...)
	})
	t.finish(err)
	if err != nil {
		return image.Image{}, explain(fmt.Errorf("pull %s: %w", name, err), name)
	}
	img.Blobs = store
	return img, nil
}

// fetchingProvider reads blobs from store, fetching them first when store
// lacks them.
type fetchingProvider struct {
	store   content.Store
	fetcher remotes.Fetcher
}

func (p fetchingProvider) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	if _, err := p.store.Info(ctx, desc.Digest); errdefs.IsNotFound(err) {
		if err := remotes.Fetch(ctx, p.store, p.fetcher, desc); err != nil && !errdefs.IsAlreadyExists(err) {
			return nil, err
		}
	}
	return p.store.ReaderAt(ctx, desc)
}

// tracker follows blob transfers for the progress display.
type tracker struct {
	bars *progress.Bars
	mu   sync.Mutex
	size map[string]int64
	got  map[string]int64
	// last are the manifests: read to find their children before they
	// are sent, so their reads say nothing; they are done with the push.
	last map[string]bool
}

func newTracker(bars *progress.Bars, blobs []ocispec.Descriptor, c image.Contents) *tracker {
	t := &tracker{bars: bars, size: map[string]int64{}, got: map[string]int64{}, last: map[string]bool{}}
	for _, d := range blobs {
		label := "layer "
		switch {
		case d.Digest == c.Manifest.Config.Digest:
			label = "config "
		case images.IsManifestType(d.MediaType):
			label = "manifest "
			t.last[d.Digest.String()] = true
		}
		id := d.Digest.String()
		t.size[id] = d.Size
		bars.Start(id, label+d.Digest.Encoded()[:12], d.Size)
	}
	return t
}

// set records that n bytes of blob id have been moved.
func (t *tracker) set(id string, n int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.size[id]; !ok || t.last[id] {
		return
	}
	t.got[id] = n
	t.bars.Set(id, n)
	if n >= t.size[id] {
		t.bars.Done(id, "done")
	}
}

// finish ends every bar: blobs never moved "exist" (already there) when
// err is nil; unfinished ones failed otherwise.
func (t *tracker) finish(err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, size := range t.size {
		switch got, moved := t.got[id]; {
		case t.last[id] && err == nil:
			t.bars.Done(id, "done")
		case moved && got >= size:
		case err != nil:
			t.bars.Done(id, "failed")
		case !moved:
			t.bars.Done(id, "exists")
		default:
			t.bars.Done(id, "done")
		}
	}
	t.bars.Stop()
}

// countingProvider counts the bytes read from each blob for the progress
// display; ReadAt is how the pusher reads.
type countingProvider struct {
	content.Provider
	t *tracker
}

func (p *countingProvider) ReaderAt(ctx context.Context, desc ocispec.Descriptor) (content.ReaderAt, error) {
	ra, err := p.Provider.ReaderAt(ctx, desc)
	if err != nil {
		return nil, err
	}
	return &countingReaderAt{ReaderAt: ra, id: desc.Digest.String(), t: p.t}, nil
}

type countingReaderAt struct {
	content.ReaderAt
	id string
	t  *tracker
	n  int64
}

func (r *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := r.ReaderAt.ReadAt(p, off)
	if end := off + int64(n); end > r.n {
		r.n = end
		r.t.set(r.id, end)
	}
	return n, err
}

// countingFetcher counts the bytes fetched, keeping the fetcher's reader
// seekable so that a resumed download continues with a Range request.
type countingFetcher struct {
	remotes.Fetcher
	t *tracker
}

func (f *countingFetcher) Fetch(ctx context.Context, desc ocispec.Descriptor) (io.ReadCloser, error) {
	rc, err := f.Fetcher.Fetch(ctx, desc)
	if err != nil {
		return nil, err
	}
	cr := &countingReader{rc: rc, id: desc.Digest.String(), t: f.t}
	if s, ok := rc.(io.Seeker); ok {
		return &countingReadSeeker{cr, s}, nil
	}
	return cr, nil
}

type countingReader struct {
	rc  io.ReadCloser
	id  string
	t   *tracker
	off int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.rc.Read(p)
	r.off += int64(n)
	r.t.set(r.id, r.off)
	return n, err
}

// countingReadSeeker is a countingReader of a seekable reader.
type countingReadSeeker struct {
	*countingReader
	s io.Seeker
}

func (r *countingReadSeeker) Seek(offset int64, whence int) (int64, error) {
	off, err := r.s.Seek(offset, whence)
	if err == nil {
		r.off = off
		r.t.set(r.id, off)
	}
	return off, err
}

func (r *countingReader) Close() error { return r.rc.Close() }
