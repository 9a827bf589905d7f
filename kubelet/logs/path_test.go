package logs

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestPodDirAndPath(t *testing.T) {
	dir := PodDir(DefaultRoot, "default", "web-0", "7d5e7c1a-3b0e-4a43-9d51-2f0f0b6f6c1e")
	if want := "/var/log/pods/default_web-0_7d5e7c1a-3b0e-4a43-9d51-2f0f0b6f6c1e"; dir != want {
		t.Errorf("PodDir = %q, want %q", dir, want)
	}
	if got, want := Path(dir, "nginx", 2), dir+"/nginx/2.log"; got != want {
		t.Errorf("Path = %q, want %q", got, want)
	}
}

func TestLatestAndPrevious(t *testing.T) {
	for _, tc := range []struct {
		name     string
		files    []string // under <podDir>/app/; a name ending in / is a directory
		restart  int      // the current run's, for Previous
		latest   string   // "" for not found
		previous string   // "" for not found
	}{
		{"no directory", nil, 0, "", ""},
		{"first run", []string{"0.log"}, 0, "0.log", ""},
		{"second run", []string{"0.log", "1.log"}, 1, "1.log", "0.log"},
		{"current run not written yet", []string{"0.log", "1.log"}, 2, "1.log", "1.log"},
		{"gap", []string{"0.log", "3.log", "5.log"}, 5, "5.log", "3.log"},
		{"numeric order, not lexical", []string{"9.log", "10.log"}, 10, "10.log", "9.log"},
		{"other files ignored", []string{"1.log", "x.log", "01.log", "-1.log", "2.log.gz", "4.log/"}, 2, "1.log", "1.log"},
		{"nothing before the first run", []string{"3.log"}, 3, "3.log", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			podDir := t.TempDir()
			for _, name := range tc.files {
				p := filepath.Join(podDir, "app", name)
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				if name[len(name)-1] == '/' {
					err := os.Mkdir(p, 0o755)
					if err != nil {
						t.Fatal(err)
					}
					continue
				}
				if err := os.WriteFile(p, nil, 0o640); err != nil {
					t.Fatal(err)
				}
			}

			path, restart, err := Latest(podDir, "app")
			switch {
			case tc.latest == "":
				if !errdefs.IsNotFound(err) {
					t.Errorf("Latest = %q, %v; want a not-found error", path, err)
				}
			case err != nil:
				t.Errorf("Latest: %v", err)
			case path != filepath.Join(podDir, "app", tc.latest):
				t.Errorf("Latest = %q, want %s", path, tc.latest)
			case Path(podDir, "app", restart) != path:
				t.Errorf("Latest restart %d does not match %q", restart, path)
			}

			path, err = Previous(podDir, "app", tc.restart)
			switch {
			case tc.previous == "":
				if !errdefs.IsNotFound(err) {
					t.Errorf("Previous = %q, %v; want a not-found error", path, err)
				} else if want := `previous terminated container "app" not found`; err.Error() != want {
					t.Errorf("Previous error = %q, want %q", err, want)
				}
			case err != nil:
				t.Errorf("Previous: %v", err)
			case path != filepath.Join(podDir, "app", tc.previous):
				t.Errorf("Previous = %q, want %s", path, tc.previous)
			}
		})
	}
}
