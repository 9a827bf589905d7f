package agent

import (
	"net"
	"os"
	"path/filepath"
	"testing"
)

func TestSocketPeer(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for _, tc := range []struct {
		name, path string
		want       int
		wantErr    bool
	}{
		{"path", sock, os.Getpid(), false},
		{"unix:// address", "unix://" + sock, os.Getpid(), false},
		{"nobody listens", filepath.Join(t.TempDir(), "none.sock"), 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := socketPeer(tc.path)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("socketPeer = %d, %v; want %d (error %v)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}
