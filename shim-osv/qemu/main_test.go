package qemu

import (
	"os"
	"testing"
)

// TestMain lets this test binary serve as the KVM probe's child, as the
// shim's main does.
func TestMain(m *testing.M) {
	RunProbeChild()
	os.Exit(m.Run())
}
