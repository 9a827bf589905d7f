package qemu

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/feather-edge/feather/internal/prereq"
)

func TestAccelerator(t *testing.T) {
	cache := filepath.Join(t.TempDir(), "accel")
	old := AccelCache
	AccelCache = cache
	t.Cleanup(func() { AccelCache = old })
	ctx := context.Background()

	for _, o := range []string{KVM, TCG} {
		if got, err := Accelerator(ctx, o); err != nil || got != o {
			t.Errorf("override %s: got %s, %v", o, got, err)
		}
	}
	if _, err := Accelerator(ctx, "hvf"); err == nil {
		t.Error("unknown override accepted")
	}
	if err := os.WriteFile(cache, []byte("tcg\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Accelerator(ctx, ""); err != nil || got != TCG {
		t.Errorf("cached: got %s, %v", got, err)
	}
	prereq.Program(t, System, "install Debian package qemu-system-x86")
	os.Remove(cache)
	start := time.Now()
	got, err := Accelerator(ctx, "auto")
	if err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > ProbeTimeout+2*time.Second {
		t.Errorf("probe took %v, over its bound", time.Since(start))
	}
	b, err := os.ReadFile(cache)
	if err != nil || string(b) != got+"\n" {
		t.Errorf("cache holds %q (%v), want %q", b, err, got)
	}
	t.Logf("this host: %s", got)
}
