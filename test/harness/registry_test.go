package harness_test

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/feather-edge/feather/test/harness"
)

// TestRegistryPushPull pushes the busybox image from containerd to the
// harness's registry with the real ctr, removes it, pulls it back and runs it.
func TestRegistryPushPull(t *testing.T) {
	t.Parallel()
	env := harness.New(t)
	reg := env.StartRegistry()
	ctrd := env.StartContainerd(harness.ContainerdOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	tarball := filepath.Join(t.TempDir(), "busybox.tar")
	if err := harness.WriteBusyboxImage(tarball, busyboxRef); err != nil {
		t.Fatal(err)
	}
	remote := reg.Host + "/feather/busybox:test"
	ctr := func(args ...string) string {
		t.Helper()
		out, err := ctrd.Ctr(ctx, append([]string{"--namespace", "registry-test"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	ctr("image", "import", tarball)
	ctr("image", "tag", busyboxRef, remote)
	ctr("image", "push", "--plain-http", remote)

	resp, err := http.Get("http://" + reg.Host + "/v2/feather/busybox/tags/list")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tags struct{ Tags []string }
	if err := json.NewDecoder(resp.Body).Decode(&tags); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(tags.Tags, "test") {
		t.Fatalf("registry tags = %v, want test", tags.Tags)
	}

	ctr("image", "rm", "--sync", busyboxRef, remote)
	if out := ctr("image", "ls", "-q"); strings.TrimSpace(out) != "" {
		t.Fatalf("images left after rm: %q", out)
	}
	ctr("image", "pull", "--plain-http", remote)
	if out := ctr("run", "--rm", remote, "pulled", "echo", "pulled from the registry"); !strings.Contains(out, "pulled from the registry\n") {
		t.Errorf("ctr run output = %q", out)
	}
}
