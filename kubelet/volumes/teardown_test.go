package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestTeardown(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t, secret("db", map[string]string{"password": "pw"}))
	host := t.TempDir()
	if err := os.WriteFile(filepath.Join(host, "keep"), []byte("host data"), 0o644); err != nil {
		t.Fatal(err)
	}
	pod := newPod("uid-teardown",
		corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db"}}},
		corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumMemory}}},
		corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: host}}},
	)
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dirs["shm"], "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	podDir := filepath.Join(f.m.Root, "uid-teardown")
	if n := mountsUnder(t, podDir); n != 2 {
		t.Fatalf("%d mounts under the pod, want 2 (secret, memory emptyDir)", n)
	}

	// A fresh Manager, as after an agent crash: it finds the mounts in mountinfo.
	m2 := &Manager{Root: f.m.Root}
	if err := m2.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left after Teardown", n)
	}
	if _, err := os.Lstat(podDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod directory left after Teardown: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(host, "keep")); err != nil || string(b) != "host data" {
		t.Fatalf("hostPath touched by Teardown: %q %v", b, err)
	}
	// Idempotent.
	if err := m2.Teardown(context.Background(), pod.UID); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

func TestTeardownStackedAndNestedMounts(t *testing.T) {
	requiresRoot(t)
	m := &Manager{Root: t.TempDir()}
	podDir := filepath.Join(m.Root, "uid-stacked")
	a := filepath.Join(podDir, "volumes", "a")
	if err := os.MkdirAll(a, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unmountAll(podDir) })
	for range 2 { // two tmpfs stacked on one mount point
		if err := mountTmpfs(a, 0o755, 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	nested := filepath.Join(a, "nested")
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mountTmpfs(nested, 0o755, 1<<20); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(context.Background(), "uid-stacked"); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left", n)
	}
	if _, err := os.Lstat(podDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("pod directory left: %v", err)
	}
}

func TestTeardownSymlinkInRoot(t *testing.T) {
	m := &Manager{Root: t.TempDir()}
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(m.Root, "uid-link")); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(context.Background(), "uid-link"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "precious")); err != nil {
		t.Fatalf("Teardown followed a symlink out of Root: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(m.Root, "uid-link")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("symlink left: %v", err)
	}
}

func TestTeardownBadInput(t *testing.T) {
	m := &Manager{Root: t.TempDir()}
	for _, uid := range []types.UID{"", "..", "a/b"} {
		if err := m.Teardown(context.Background(), uid); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Teardown(%q) = %v, want invalid argument", uid, err)
		}
	}
	if err := (&Manager{Root: "relative"}).Teardown(context.Background(), "x"); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("relative Root: %v, want failed precondition", err)
	}
}

func TestOrphans(t *testing.T) {
	m := &Manager{Root: t.TempDir()}
	for _, d := range []string{"uid-c", "uid-a", "uid-b"} {
		if err := os.MkdirAll(filepath.Join(m.Root, d, "volumes"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(m.Root, "stray-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := m.Orphans(map[types.UID]bool{"uid-b": true, "uid-z": true})
	if err != nil {
		t.Fatal(err)
	}
	if want := []types.UID{"uid-a", "uid-c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Orphans = %v, want %v", got, want)
	}

	missing := &Manager{Root: filepath.Join(m.Root, "does-not-exist")}
	if got, err := missing.Orphans(nil); err != nil || len(got) != 0 {
		t.Fatalf("Orphans of a missing Root = %v, %v; want none", got, err)
	}
}
