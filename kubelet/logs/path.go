package logs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	"k8s.io/apimachinery/pkg/types"
)

// DefaultRoot is where kubelet keeps pod logs, and so where tools that
// collect them (log shippers reading /var/log/pods) look.
const DefaultRoot = "/var/log/pods"

// PodDir returns the directory of a pod's logs under root, named as kubelet
// names it: <root>/<namespace>_<name>_<uid>.
func PodDir(root, namespace, name string, uid types.UID) string {
	return filepath.Join(root, namespace+"_"+name+"_"+string(uid))
}

// Path returns the log file of one run of a container: <podDir>/<container>/<restart>.log,
// restart being the container's restart count for that run (0 for the first).
func Path(podDir, container string, restart int) string {
	return filepath.Join(podDir, container, strconv.Itoa(restart)+".log")
}

// Latest returns the log file of the container's latest run on disk, the one
// with the highest restart count, and that count. For when the restart count
// is not known (an agent that lost its state); otherwise use Path. It fails
// with an error that errdefs.IsNotFound matches if the container has no log.
func Latest(podDir, container string) (path string, restart int, err error) {
	runs, err := runs(podDir, container)
	if err != nil {
		return "", 0, err
	}
	if len(runs) == 0 {
		return "", 0, errdefs.ErrNotFound.WithMessage(fmt.Sprintf("no log of container %q in %s", container, podDir))
	}
	restart = slices.Max(runs)
	return Path(podDir, container, restart), restart, nil
}

// Previous returns the log file of the run before the current one (restart
// is the current run's restart count), for `kubectl logs --previous`: the
// file of the highest restart count below restart. If there is none it fails
// with kubelet's message, `previous terminated container "<name>" not found`,
// in an error that errdefs.IsNotFound matches.
func Previous(podDir, container string, restart int) (string, error) {
	runs, err := runs(podDir, container)
	if err != nil {
		return "", err
	}
	prev := -1
	for _, n := range runs {
		if n < restart && n > prev {
			prev = n
		}
	}
	if prev < 0 {
		return "", errdefs.ErrNotFound.WithMessage(fmt.Sprintf("previous terminated container %q not found", container))
	}
	return Path(podDir, container, prev), nil
}

// runs returns the restart counts of a container's log files; none if its
// directory does not exist.
func runs(podDir, container string) ([]int, error) {
	entries, err := os.ReadDir(filepath.Join(podDir, container))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list logs of container %q: %w", container, err)
	}
	var runs []int
	for _, e := range entries {
		num, ok := strings.CutSuffix(e.Name(), ".log")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		if n, err := strconv.Atoi(num); err == nil && n >= 0 && strconv.Itoa(n) == num {
			runs = append(runs, n)
		}
	}
	return runs, nil
}
