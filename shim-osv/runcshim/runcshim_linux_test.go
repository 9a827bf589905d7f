package runcshim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestDelegated(t *testing.T) {
	bundle := t.TempDir()
	if Delegated(bundle) {
		t.Error("a bundle without the marker is delegated")
	}
	os.WriteFile(filepath.Join(bundle, Marker), []byte("unix:///run/containerd/s/x"), 0o600)
	if !Delegated(bundle) {
		t.Error("a bundle with the marker is not delegated")
	}
}

// TestStartWithoutRuncShim: without containerd-shim-runc-v2 the error says
// what is missing and why it is needed, and nothing is left in the bundle.
func TestStartWithoutRuncShim(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	bundle := t.TempDir()
	_, err := New(Config{Namespace: "default", Bundle: bundle}).Start(context.Background(), "c1", bundle)
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), Binary) {
		t.Fatalf("err = %v, want a failed precondition naming %s", err, Binary)
	}
	if ents, _ := os.ReadDir(bundle); len(ents) != 0 {
		t.Errorf("bundle holds %v", ents)
	}
}
