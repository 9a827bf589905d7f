package volumes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/kubelet/downward"
)

// DefaultResyncPeriod is how often Refresh asks to be called again for a pod with configMap, secret, downwardAPI
// or projected volumes when Manager.ResyncPeriod is zero.
const DefaultResyncPeriod = time.Minute

const (
	defaultFileMode = 0o644 // of keys and items without defaultMode or mode, as in Kubernetes
	// defaultTokenExpiration is the default of serviceAccountToken.expirationSeconds, as in Kubernetes.
	defaultTokenExpiration = int64(3600)
	minTokenExpiration     = int64(600)
	// maxTokenAge is when kubelet renews a token at the latest, whatever its lifetime.
	maxTokenAge = 24 * time.Hour
	// tokenRetry is how soon Refresh asks to be called again after a failed token request.
	tokenRetry = 10 * time.Second
)

// Manager materialises pods' volumes under Root/<podUID>/volumes/<name> (see the package documentation for the
// layout). Set the exported fields before first use and do not change them after. A Manager is safe for
// concurrent use; calls for one pod are serialised. The only state it keeps in memory is the service account
// tokens it obtained, so that Setup and Refresh do not ask for a new one each time; after an agent restart Setup
// asks for fresh tokens.
type Manager struct {
	// Root holds one directory per pod, e.g. /var/lib/feather/pods. It must be an absolute path, and is only
	// ever written by this Manager.
	Root string
	// Source gives the configMaps, secrets and tokens volumes are made from. Pods with only emptyDir and
	// hostPath volumes need none.
	Source Source
	// NodeName is given to a downward API spec.nodeName when the pod has none.
	NodeName string
	// NodeAllocatable is the node's allocatable resources: the value of a downward API limits.cpu,
	// limits.memory or limits.ephemeral-storage of a container without that limit, and the size bound of a
	// memory emptyDir of a pod with a container without a memory limit. A downward API limit that falls back
	// on an amount missing here is an error.
	NodeAllocatable corev1.ResourceList
	// ResyncPeriod is how often configMap, secret, downwardAPI and projected volumes are compared with the
	// API; zero means DefaultResyncPeriod.
	ResyncPeriod time.Duration
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time

	mu   sync.Mutex
	pods map[types.UID]*podState
}

// podState is what a Manager remembers of one pod.
type podState struct {
	mu      sync.Mutex // held through Setup, Refresh and Teardown of the pod
	tokens  map[string]*cachedToken
	retryAt time.Time // when a failed token request should be tried again; zero when none failed
}

// cachedToken is a service account token obtained for one projected source.
type cachedToken struct {
	serviceAccount string
	audience       string
	expiration     int64 // requested expirationSeconds
	value          string
	refreshAt      time.Time
}

// Setup creates every volume of pod and returns its volumes' host paths by name: the volume directory, or for a
// hostPath the host path itself (a file for the file types). It is idempotent: called again (after an agent
// restart, or to refresh) it rewrites configMap, secret, downwardAPI and projected contents atomically when they
// changed, remounts a missing tmpfs, and leaves emptyDir contents alone.
//
// A volume that fails is left out of the map, and the error, one line per failed volume, names the volume and
// the reason, wrapping errdefs sentinels (ErrInvalidArgument for a bad path or mode, ErrNotFound for a missing
// configMap, secret or key, ErrNotImplemented for an unsupported volume type) and the API error, so the agent can
// put it in the pod's status as it is. Nothing of a volume that failed on its first setup is left behind; a
// volume that was set up before keeps its previous contents. Volumes that succeeded stay set up; Teardown removes
// them.
func (m *Manager) Setup(ctx context.Context, pod *corev1.Pod) (map[string]string, error) {
	if err := m.check(pod); err != nil {
		return nil, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name))
	st := m.lock(pod.UID)
	defer st.mu.Unlock()

	dirs := make(map[string]string, len(pod.Spec.Volumes))
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		p, err := m.setupVolume(ctx, st, pod, v)
		if err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
			continue
		}
		dirs[v.Name] = p
	}
	return dirs, errors.Join(errs...)
}

// Refresh rewrites what changes over time in the volumes Setup made: projected service account tokens past 80%
// of their lifetime (or 24 hours old), and configMap, secret, downwardAPI (labels, annotations, pod IP, …) and
// projected volumes whose content changed. Volumes not set up yet are skipped (Setup makes them). A volume that
// fails keeps its previous contents, and the error names it.
//
// next is when Refresh should be called again: the earliest token renewal, the resync period, or soon after a
// failed token request; zero when the pod has no volume that changes.
func (m *Manager) Refresh(ctx context.Context, pod *corev1.Pod) (next time.Time, err error) {
	if err := m.check(pod); err != nil {
		return time.Time{}, err
	}
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("pod", pod.Namespace+"/"+pod.Name))
	st := m.lock(pod.UID)
	defer st.mu.Unlock()

	now := m.now()
	st.retryAt = time.Time{}
	var errs []error
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		if !isAtomic(v) {
			continue
		}
		next = earliest(next, now.Add(m.resyncPeriod()))
		if err := checkName("volume name", v.Name); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, err := m.writeVolume(ctx, st, pod, v, true); err != nil {
			errs = append(errs, fmt.Errorf("volume %q: %w", v.Name, err))
		}
	}
	for _, tok := range st.tokens {
		next = earliest(next, tok.refreshAt)
	}
	next = earliest(next, st.retryAt)
	if !next.IsZero() && !next.After(now) {
		next = now.Add(tokenRetry)
	}
	return next, errors.Join(errs...)
}

// Teardown unmounts every mount below Root/<podUID> (the tmpfs of memory emptyDirs, secrets and projected
// volumes, found in /proc/self/mountinfo, so it works after a crash) and removes Root/<podUID> entirely. hostPath
// sources are never touched. It is idempotent: a pod with no directory is torn down already. It removes nothing
// if a mount cannot be removed.
func (m *Manager) Teardown(ctx context.Context, podUID types.UID) error {
	if err := m.checkRoot(); err != nil {
		return err
	}
	if err := checkName("pod UID", string(podUID)); err != nil {
		return err
	}
	st := m.lock(podUID)
	defer st.mu.Unlock()

	podDir := filepath.Join(m.Root, string(podUID))
	if err := removeTree(podDir); err != nil {
		return fmt.Errorf("tear down volumes of pod %s: %w", podUID, err)
	}
	m.mu.Lock()
	delete(m.pods, podUID)
	m.mu.Unlock()
	log.G(ctx).WithField("podUID", podUID).Debug("volumes torn down")
	return nil
}

// Orphans lists, sorted, the pod UIDs that have a directory under Root but are not in keep, for the agent to
// Teardown at start. A missing Root has none.
func (m *Manager) Orphans(keep map[types.UID]bool) ([]types.UID, error) {
	if err := m.checkRoot(); err != nil {
		return nil, err
	}
	entries, err := os.ReadDir(m.Root)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list pod directories: %w", err)
	}
	var out []types.UID
	for _, e := range entries {
		uid := types.UID(e.Name())
		if e.IsDir() && !keep[uid] {
			out = append(out, uid)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

func (m *Manager) setupVolume(ctx context.Context, st *podState, pod *corev1.Pod, v *corev1.Volume) (string, error) {
	if err := checkName("volume name", v.Name); err != nil {
		return "", err
	}
	switch {
	case v.HostPath != nil:
		return checkHostPath(v.HostPath)
	case v.EmptyDir != nil:
		return m.setupEmptyDir(pod, v)
	case isAtomic(v):
		return m.writeVolume(ctx, st, pod, v, false)
	case v.Image != nil:
		return m.setupImage(pod, v)
	}
	return "", fmt.Errorf("%s volumes are not supported by Feather (use emptyDir, hostPath, configMap, secret, downwardAPI, projected or image): %w",
		volumeType(v), errdefs.ErrNotImplemented)
}

// setupEmptyDir makes an emptyDir's directory, with a tmpfs on it for medium Memory. Mode and fsGroup are set when
// the directory (or tmpfs) is new only, so a container's own changes survive an agent restart.
func (m *Manager) setupEmptyDir(pod *corev1.Pod, v *corev1.Volume) (string, error) {
	ed := v.EmptyDir
	mode := os.FileMode(0o777)
	if ed.Mode != nil {
		var err error
		if mode, err = unixMode(*ed.Mode, 0o1777); err != nil {
			return "", fmt.Errorf("emptyDir mode: %w", err)
		}
	}
	var memory bool
	switch ed.Medium {
	case corev1.StorageMediumDefault:
	case corev1.StorageMediumMemory:
		memory = true
	default:
		return "", fmt.Errorf("emptyDir medium %q is not supported (use the default disk medium or Memory): %w", ed.Medium, errdefs.ErrNotImplemented)
	}

	dir := m.volumeDir(pod.UID, v.Name)
	_, err := os.Lstat(dir)
	created := errors.Is(err, fs.ErrNotExist)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("create emptyDir: %w", err)
	}
	fresh := created
	var mountedNow bool
	fail := func(err error) (string, error) {
		if created {
			return "", m.undo(dir, true, err)
		}
		if mountedNow {
			if uerr := unmountAll(dir); uerr != nil {
				return "", errors.Join(err, uerr)
			}
		}
		return "", err
	}
	if memory {
		mounted, err := isMountPoint(dir)
		if err != nil {
			return fail(err)
		}
		if !mounted {
			if err := mountTmpfs(dir, mode, m.memorySize(pod, ed)); err != nil {
				return fail(err)
			}
			mountedNow, fresh = true, true
		}
	}
	if fresh {
		if gid := fsGroup(pod); gid != nil {
			if err := os.Lchown(dir, -1, int(*gid)); err != nil {
				return fail(fmt.Errorf("set fsGroup on emptyDir: %w", err))
			}
			mode = fsGroupMode(mode, true, false)
		}
		if err := os.Chmod(dir, mode); err != nil {
			return fail(fmt.Errorf("set emptyDir mode: %w", err))
		}
	}
	return dir, nil
}

// memorySize is the size of a memory emptyDir's tmpfs: sizeLimit bounded by the pod's memory limit (or the node's
// allocatable memory), as kubelet sizes it; 0 (the kernel's default) when none of these is known.
func (m *Manager) memorySize(pod *corev1.Pod, ed *corev1.EmptyDirVolumeSource) int64 {
	limit := podMemoryLimit(pod)
	if limit == 0 {
		if q, ok := m.NodeAllocatable[corev1.ResourceMemory]; ok {
			limit = q.Value()
		}
	}
	if ed.SizeLimit != nil && ed.SizeLimit.Value() > 0 && (limit == 0 || ed.SizeLimit.Value() < limit) {
		return ed.SizeLimit.Value()
	}
	return limit
}

// writeVolume builds the files of a configMap, secret, downwardAPI or projected volume and writes them
// atomically, on a tmpfs for secret and projected volumes. With refresh, a volume that was never written is
// skipped. It returns the volume directory.
func (m *Manager) writeVolume(ctx context.Context, st *podState, pod *corev1.Pod, v *corev1.Volume, refresh bool) (string, error) {
	dir := m.volumeDir(pod.UID, v.Name)
	cur, err := currentVersion(dir)
	if err != nil {
		return "", err
	}
	if refresh && cur == "" {
		return "", nil
	}
	// Everything that can fail for a reason in the pod's spec or the API fails here, before anything is written.
	pl, onTmpfs, err := m.payload(ctx, st, pod, v)
	if err != nil {
		return "", err
	}

	if err := os.MkdirAll(dir, 0o750); err != nil {
		return "", fmt.Errorf("create volume directory: %w", err)
	}
	// A volume never written (or whose first write crashed) is removed whole on failure.
	fresh := cur == ""
	if onTmpfs {
		mounted, err := isMountPoint(dir)
		if err != nil {
			return "", m.undo(dir, fresh, err)
		}
		if !mounted {
			if !fresh {
				// The tmpfs went away under a written volume (someone unmounted it): its files are on disk now.
				// Start again on a new tmpfs.
				if err := removeTree(dir); err != nil {
					return "", err
				}
				if err := os.MkdirAll(dir, 0o750); err != nil {
					return "", fmt.Errorf("create volume directory: %w", err)
				}
				fresh = true
			}
			if err := mountTmpfs(dir, 0o755, 0); err != nil {
				return "", m.undo(dir, fresh, err)
			}
		}
	}
	gid := fsGroup(pod)
	if err := setOwnership(dir, 0o755, true, gid); err != nil {
		return "", m.undo(dir, fresh, err)
	}
	changed, err := writeAtomic(dir, pl, gid, m.now())
	if err != nil {
		return "", m.undo(dir, fresh, err)
	}
	if changed && !fresh {
		log.G(ctx).WithField("volume", v.Name).Info("volume contents updated")
	}
	return dir, nil
}

// undo removes a volume directory made by the failed call (unmounting what is mounted on it) and returns err.
func (m *Manager) undo(dir string, made bool, err error) error {
	if made {
		if rerr := removeTree(dir); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return err
}

// removeTree unmounts everything at or below dir and removes dir. A symlink in place of dir is removed, never
// followed.
func removeTree(dir string) error {
	fi, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		if err := unmountAll(dir); err != nil {
			return err
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("remove %s: %w", dir, err)
	}
	return nil
}

// payload builds the files of an atomic-writer volume and says whether they belong on a tmpfs.
func (m *Manager) payload(ctx context.Context, st *podState, pod *corev1.Pod, v *corev1.Volume) (payload, bool, error) {
	pl := payload{}
	switch {
	case v.ConfigMap != nil:
		s := v.ConfigMap
		dm, err := fileMode(s.DefaultMode, defaultFileMode)
		if err != nil {
			return nil, false, fmt.Errorf("defaultMode: %w", err)
		}
		return pl, false, m.addConfigMap(ctx, pod, pl, s.Name, s.Items, s.Optional, dm)
	case v.Secret != nil:
		s := v.Secret
		dm, err := fileMode(s.DefaultMode, defaultFileMode)
		if err != nil {
			return nil, false, fmt.Errorf("defaultMode: %w", err)
		}
		return pl, true, m.addSecret(ctx, pod, pl, s.SecretName, s.Items, s.Optional, dm)
	case v.DownwardAPI != nil:
		dm, err := fileMode(v.DownwardAPI.DefaultMode, defaultFileMode)
		if err != nil {
			return nil, false, fmt.Errorf("defaultMode: %w", err)
		}
		return pl, false, m.addDownward(pod, pl, v.DownwardAPI.Items, dm)
	case v.Projected != nil:
		dm, err := fileMode(v.Projected.DefaultMode, defaultFileMode)
		if err != nil {
			return nil, false, fmt.Errorf("defaultMode: %w", err)
		}
		for i, src := range v.Projected.Sources {
			var err error
			switch {
			case src.ConfigMap != nil:
				err = m.addConfigMap(ctx, pod, pl, src.ConfigMap.Name, src.ConfigMap.Items, src.ConfigMap.Optional, dm)
			case src.Secret != nil:
				err = m.addSecret(ctx, pod, pl, src.Secret.Name, src.Secret.Items, src.Secret.Optional, dm)
			case src.DownwardAPI != nil:
				err = m.addDownward(pod, pl, src.DownwardAPI.Items, dm)
			case src.ServiceAccountToken != nil:
				err = m.addToken(ctx, st, pod, pl, fmt.Sprintf("%s/%d", v.Name, i), src.ServiceAccountToken, dm)
			case src.ClusterTrustBundle != nil:
				err = fmt.Errorf("clusterTrustBundle sources are not supported by Feather: %w", errdefs.ErrNotImplemented)
			case src.PodCertificate != nil:
				err = fmt.Errorf("podCertificate sources are not supported by Feather: %w", errdefs.ErrNotImplemented)
			default:
				err = fmt.Errorf("source sets no configMap, secret, downwardAPI or serviceAccountToken: %w", errdefs.ErrInvalidArgument)
			}
			if err != nil {
				return nil, false, fmt.Errorf("projected source %d: %w", i, err)
			}
		}
		return pl, true, nil
	}
	return nil, false, fmt.Errorf("not an atomic-writer volume: %w", errdefs.ErrInvalidArgument)
}

func (m *Manager) addConfigMap(ctx context.Context, pod *corev1.Pod, pl payload, name string, items []corev1.KeyToPath, optional *bool, dm os.FileMode) error {
	if m.Source == nil {
		return fmt.Errorf("configMap %q: the agent gave no Source: %w", name, errdefs.ErrFailedPrecondition)
	}
	opt := optional != nil && *optional
	cm, err := m.Source.ConfigMap(ctx, pod.Namespace, name)
	if apierrors.IsNotFound(err) {
		if opt {
			return nil
		}
		return fmt.Errorf("configMap %q not found in namespace %q (create it, or mark the volume optional): %w", name, pod.Namespace, notFound{err})
	}
	if err != nil {
		return fmt.Errorf("get configMap %q: %w", name, err)
	}
	data := make(map[string][]byte, len(cm.Data)+len(cm.BinaryData))
	for k, v := range cm.Data {
		data[k] = []byte(v)
	}
	for k, v := range cm.BinaryData {
		data[k] = v
	}
	return addKeys(pl, "configMap", name, data, items, opt, dm)
}

func (m *Manager) addSecret(ctx context.Context, pod *corev1.Pod, pl payload, name string, items []corev1.KeyToPath, optional *bool, dm os.FileMode) error {
	if m.Source == nil {
		return fmt.Errorf("secret %q: the agent gave no Source: %w", name, errdefs.ErrFailedPrecondition)
	}
	opt := optional != nil && *optional
	s, err := m.Source.Secret(ctx, pod.Namespace, name)
	if apierrors.IsNotFound(err) {
		if opt {
			return nil
		}
		return fmt.Errorf("secret %q not found in namespace %q (create it, or mark the volume optional): %w", name, pod.Namespace, notFound{err})
	}
	if err != nil {
		return fmt.Errorf("get secret %q: %w", name, err)
	}
	return addKeys(pl, "secret", name, s.Data, items, opt, dm)
}

// addKeys adds the keys of a configMap or secret: all of them as files named by their keys, or the listed items.
func addKeys(pl payload, kind, name string, data map[string][]byte, items []corev1.KeyToPath, optional bool, dm os.FileMode) error {
	if len(items) == 0 {
		keys := make([]string, 0, len(data))
		for k := range data {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if err := pl.add(k, file{data: data[k], mode: dm}); err != nil {
				return fmt.Errorf("%s %q key %q: %w", kind, name, k, err)
			}
		}
		return nil
	}
	for _, it := range items {
		val, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return fmt.Errorf("%s %q has no key %q (add it, or mark the volume optional): %w", kind, name, it.Key, errdefs.ErrNotFound)
		}
		mode, err := fileMode(it.Mode, dm)
		if err != nil {
			return fmt.Errorf("%s %q item %q: %w", kind, name, it.Key, err)
		}
		if err := pl.add(it.Path, file{data: val, mode: mode}); err != nil {
			return fmt.Errorf("%s %q item %q: %w", kind, name, it.Key, err)
		}
	}
	return nil
}

func (m *Manager) addDownward(pod *corev1.Pod, pl payload, items []corev1.DownwardAPIVolumeFile, dm os.FileMode) error {
	for _, it := range items {
		var (
			val string
			err error
		)
		switch {
		case it.FieldRef != nil && it.ResourceFieldRef == nil:
			val, err = downward.FieldValue(pod, m.NodeName, it.FieldRef)
		case it.ResourceFieldRef != nil && it.FieldRef == nil:
			val, err = downward.ResourceValue(pod, m.NodeAllocatable, it.ResourceFieldRef)
		default:
			err = fmt.Errorf("set exactly one of fieldRef and resourceFieldRef: %w", errdefs.ErrInvalidArgument)
		}
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		mode, err := fileMode(it.Mode, dm)
		if err != nil {
			return fmt.Errorf("downwardAPI item %q: %w", it.Path, err)
		}
		if err := pl.add(it.Path, file{data: []byte(val), mode: mode}); err != nil {
			return fmt.Errorf("downwardAPI item: %w", err)
		}
	}
	return nil
}

// addToken adds a service account token, asking for a new one when there is none for key, when the source
// changed, or when the one there is due for renewal.
func (m *Manager) addToken(ctx context.Context, st *podState, pod *corev1.Pod, pl payload, key string, src *corev1.ServiceAccountTokenProjection, dm os.FileMode) error {
	exp := defaultTokenExpiration
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	if exp < minTokenExpiration {
		return fmt.Errorf("serviceAccountToken expirationSeconds %d: must be at least %d: %w", exp, minTokenExpiration, errdefs.ErrInvalidArgument)
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	now := m.now()
	tok := st.tokens[key]
	if tok == nil || tok.serviceAccount != sa || tok.audience != src.Audience || tok.expiration != exp || !now.Before(tok.refreshAt) {
		if m.Source == nil {
			return fmt.Errorf("serviceAccountToken: the agent gave no Source: %w", errdefs.ErrFailedPrecondition)
		}
		req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			ExpirationSeconds: &exp,
			BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
		}}
		if src.Audience != "" {
			req.Spec.Audiences = []string{src.Audience}
		}
		resp, err := m.Source.Token(ctx, pod.Namespace, sa, req)
		if err == nil && resp.Status.Token == "" {
			err = errors.New("the API server returned an empty token")
		}
		if err != nil {
			st.retryAt = now.Add(tokenRetry)
			return fmt.Errorf("request token of service account %q in namespace %q: %w", sa, pod.Namespace, err)
		}
		tok = &cachedToken{serviceAccount: sa, audience: src.Audience, expiration: exp, value: resp.Status.Token,
			refreshAt: tokenRefreshAt(resp, exp, now)}
		if st.tokens == nil {
			st.tokens = map[string]*cachedToken{}
		}
		st.tokens[key] = tok
		log.G(ctx).WithField("serviceAccount", sa).WithField("refreshAt", tok.refreshAt).Debug("service account token obtained")
	}
	if err := pl.add(src.Path, file{data: []byte(tok.value), mode: dm}); err != nil {
		return fmt.Errorf("serviceAccountToken: %w", err)
	}
	return nil
}

// tokenRefreshAt is when kubelet renews a token: once 80% of its lifetime has passed, or once it is 24 hours old.
// The lifetime is what the API server granted (it may extend the requested one); requested is the fallback.
func tokenRefreshAt(resp *authenticationv1.TokenRequest, requested int64, now time.Time) time.Time {
	ttl := time.Duration(requested) * time.Second
	if resp.Spec.ExpirationSeconds != nil && *resp.Spec.ExpirationSeconds > 0 {
		ttl = time.Duration(*resp.Spec.ExpirationSeconds) * time.Second
	}
	exp := resp.Status.ExpirationTimestamp.Time
	if exp.IsZero() {
		exp = now.Add(ttl)
	}
	issued := exp.Add(-ttl)
	at := exp.Add(-ttl / 5)
	if latest := issued.Add(maxTokenAge); latest.Before(at) {
		at = latest
	}
	return at
}

// notFound marks an API NotFound error as errdefs.ErrNotFound too, keeping its message.
type notFound struct{ error }

func (e notFound) Is(target error) bool { return target == errdefs.ErrNotFound }
func (e notFound) Unwrap() error        { return e.error }

// isAtomic reports whether v is written by the atomic writer.
func isAtomic(v *corev1.Volume) bool {
	return v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil
}

// volumeType names the type of v as the pod's YAML does ("persistentVolumeClaim").
func volumeType(v *corev1.Volume) string {
	b, err := json.Marshal(v.VolumeSource)
	var fields map[string]json.RawMessage
	if err != nil || json.Unmarshal(b, &fields) != nil || len(fields) == 0 {
		return "empty"
	}
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, "+")
}

// fileMode returns mode (or def when nil) as permission bits; Kubernetes allows 0 to 0777.
func fileMode(mode *int32, def os.FileMode) (os.FileMode, error) {
	if mode == nil {
		return def, nil
	}
	return unixMode(*mode, 0o777)
}

// unixMode converts a numeric mode of at most maxMode (0777, or 01777 with the sticky bit) to an os.FileMode.
func unixMode(mode int32, maxMode int32) (os.FileMode, error) {
	if mode < 0 || mode > maxMode || mode&^maxMode != 0 {
		return 0, fmt.Errorf("mode %#o out of range 0 to %#o: %w", mode, maxMode, errdefs.ErrInvalidArgument)
	}
	m := os.FileMode(mode & 0o777)
	if mode&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// fsGroup returns the pod's fsGroup, or nil.
func fsGroup(pod *corev1.Pod) *int64 {
	if sc := pod.Spec.SecurityContext; sc != nil {
		return sc.FSGroup
	}
	return nil
}

// checkName refuses a name that is not a single path element.
func checkName(what, name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%s %q cannot name a directory: %w", what, name, errdefs.ErrInvalidArgument)
	}
	return nil
}

func (m *Manager) check(pod *corev1.Pod) error {
	if err := m.checkRoot(); err != nil {
		return err
	}
	if pod == nil {
		return fmt.Errorf("nil pod: %w", errdefs.ErrInvalidArgument)
	}
	return checkName("pod UID", string(pod.UID))
}

func (m *Manager) checkRoot() error {
	if !filepath.IsAbs(m.Root) {
		return fmt.Errorf("volume root %q must be an absolute path: %w", m.Root, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (m *Manager) volumeDir(uid types.UID, name string) string {
	return filepath.Join(m.Root, string(uid), "volumes", name)
}

// lock returns the pod's state, locked.
func (m *Manager) lock(uid types.UID) *podState {
	m.mu.Lock()
	if m.pods == nil {
		m.pods = map[types.UID]*podState{}
	}
	st := m.pods[uid]
	if st == nil {
		st = &podState{}
		m.pods[uid] = st
	}
	m.mu.Unlock()
	st.mu.Lock()
	return st
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) resyncPeriod() time.Duration {
	if m.ResyncPeriod > 0 {
		return m.ResyncPeriod
	}
	return DefaultResyncPeriod
}

// earliest returns the earlier of a and b, a zero time counting as none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
