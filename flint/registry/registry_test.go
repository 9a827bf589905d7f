package registry

import (
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/plugins/content/local"
	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/inspect"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/flint/registry/registrytest"
)

func packed(t *testing.T) *pack.Packed {
	t.Helper()
	p, err := pack.Pack(context.Background(), pack.Options{Disk: "../disk/testdata/raw.img", Compression: pack.CompressionNone, TempDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func count(reqs []string, prefix string) int {
	n := 0
	for _, r := range reqs {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

func TestPushPull(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t.Cleanup)
	p := packed(t)
	ref := reg.Host + "/feather/app:v1"
	o := Options{PlainHTTP: true}
	if err := Push(ctx, p.Image, ref, o); err != nil {
		t.Fatal(err)
	}
	uploads := count(reg.Requests(), "PUT /v2/feather/app/blobs/uploads/")
	if uploads != 2 {
		t.Errorf("first push uploaded %d blobs, want 2 (config, layer)", uploads)
	}
	// Again: the registry has every blob, nothing is uploaded.
	if err := Push(ctx, p.Image, ref, o); err != nil {
		t.Fatal(err)
	}
	if n := count(reg.Requests(), "PUT /v2/feather/app/blobs/uploads/"); n != uploads {
		t.Errorf("second push uploaded %d more blobs, want 0", n-uploads)
	}

	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	img, err := Pull(ctx, ref, store, o)
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.Digest != p.Manifest.Digest || img.Name != ref {
		t.Errorf("pulled %s %s, pushed %s %s", img.Name, img.Manifest.Digest, ref, p.Manifest.Digest)
	}
	r, err := inspect.Inspect(ctx, img)
	if err != nil || r.Check() != nil || r.Disk == nil || r.Disk.VirtualSize != 128<<10 {
		t.Errorf("inspect of the pulled image: %+v, %v", r, err)
	}
	if _, err := Pull(ctx, reg.Host+"/feather/absent:v1", store, o); !errdefs.IsNotFound(err) {
		t.Errorf("pull of an absent image: %v, want ErrNotFound", err)
	}
}

func TestPullResumes(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t.Cleanup)
	p := packed(t)
	ref := reg.Host + "/feather/app:v1"
	if err := Push(ctx, p.Image, ref, Options{PlainHTTP: true}); err != nil {
		t.Fatal(err)
	}
	store, err := local.NewStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg.Cut, reg.FailRanged = 50000, true
	if _, err := Pull(ctx, ref, store, Options{PlainHTTP: true}); err == nil {
		t.Fatal("pull through a failing network succeeded")
	}
	reg.Cut, reg.FailRanged = 0, false
	img, err := Pull(ctx, ref, store, Options{PlainHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	c, err := image.Read(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	want := "GET /v2/feather/app/blobs/" + c.Manifest.Layers[0].Digest.String() + " bytes=50000-"
	if !slices.Contains(reg.Requests(), want) {
		t.Errorf("the second pull did not continue the layer where the first stopped; requests:\n%s", strings.Join(reg.Requests(), "\n"))
	}
}

func TestAuth(t *testing.T) {
	ctx := context.Background()
	reg := registrytest.Start(t.Cleanup)
	reg.User, reg.Password = "edge", "s3cret"
	p := packed(t)
	ref := reg.Host + "/feather/app:v1"

	err := Push(ctx, p.Image, ref, Options{PlainHTTP: true, Retries: 2, Backoff: time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "docker login") || !errdefs.IsUnauthorized(err) {
		t.Fatalf("push without credentials: %v, want a 401 explained", err)
	}
	if _, ok := reg.Blob(p.Config.RootFS.DiffIDs[0]); ok {
		t.Error("the refused push stored the layer")
	}

	dir := t.TempDir()
	cfg := `{"auths":{"` + reg.Host + `":{"auth":"` + base64.StdEncoding.EncodeToString([]byte("edge:s3cret")) + `"}}}`
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o600)
	dc, err := LoadDockerConfig(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := Push(ctx, p.Image, ref, Options{PlainHTTP: true, Credentials: dc.Credentials}); err != nil {
		t.Fatalf("push with credentials from config.json: %v", err)
	}
}

func TestDockerConfigCredentials(t *testing.T) {
	enc := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	c := &DockerConfig{Auths: map[string]dockerAuth{
		"registry.example:5000":       {Auth: enc("u1:p1")},
		"https://other.example":       {Username: "u2", Password: "p2"},
		"https://index.docker.io/v1/": {Auth: enc("hub:pw")},
		"token.example":               {IdentityToken: "tok"},
		"broken.example":              {Auth: "!!"},
	}}
	for _, tc := range []struct{ host, user, secret string }{
		{"registry.example:5000", "u1", "p1"},
		{"other.example", "u2", "p2"},
		{"docker.io", "hub", "pw"},
		{"token.example", "", "tok"},
		{"unknown.example", "", ""},
	} {
		u, s, err := c.Credentials(tc.host)
		if err != nil || u != tc.user || s != tc.secret {
			t.Errorf("Credentials(%s) = %q, %q, %v; want %q, %q", tc.host, u, s, err, tc.user, tc.secret)
		}
	}
	if _, _, err := c.Credentials("broken.example"); err == nil {
		t.Error("broken auth accepted")
	}
	if c, err := LoadDockerConfig(filepath.Join(t.TempDir(), "absent.json")); err != nil || len(c.Auths) != 0 {
		t.Errorf("absent config: %v, %v", c, err)
	}
}

func TestTransient(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{errors.New("connection reset"), true},
		{errdefs.ErrInvalidArgument, false},
		{errdefs.ErrNotFound, false},
	} {
		if got := transient(ctx, tc.err); got != tc.want {
			t.Errorf("transient(%v) = %v", tc.err, got)
		}
	}
}
