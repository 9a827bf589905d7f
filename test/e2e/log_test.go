package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestOSvLogURI sends a VM's console to a file:// log URI and to a
// binary:// logging binary instead of ctr's FIFOs.
func TestOSvLogURI(t *testing.T) {
	env, ctrd := osvEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logger, err := filepath.Abs("testdata/logger.sh")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name, uri, file string
	}{
		{"file", "file://" + filepath.Join(dir, "console.log"), filepath.Join(dir, "console.log")},
		{"binary", "binary://" + logger + "?dir=" + dir, filepath.Join(dir, ns+".log-binary.out")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "log-" + tc.name
			if out, code := ctrRun(ctx, t, ctrd, "--log-uri", tc.uri, directRef, id, "/args", "to-"+tc.name); code != 0 {
				t.Fatalf("exit %d: %s", code, out)
			}
			want := []string{"arg[0]=/args\n", "arg[1]=to-" + tc.name + "\n"}
			var got string
			deadline := time.Now().Add(10 * time.Second)
			for { // the logger may still be draining its pipe when ctr returns
				b, _ := os.ReadFile(tc.file)
				got = string(b)
				if containsAll(got, want) || time.Now().After(deadline) {
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if !containsAll(got, want) {
				t.Errorf("%s lacks %q:\n%s", tc.file, want, got)
			}
		})
	}
	// The logger exits once the VM is deleted and its pipes close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(dir, ns+".log-binary.done")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the logging binary did not exit after the task was deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	assertNoLeaks(t, env)
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
