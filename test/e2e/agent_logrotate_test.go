package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/feather-edge/feather/test/harness"
)

// kubectl runs the pinned kubectl as a user types it, with the cluster
// admin's kubeconfig, and returns its combined output.
func (c *cluster) kubectl(ctx context.Context, t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := c.kubectlCmd(ctx, t, args...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) kubectlCmd(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, harness.RequiresBin(t, "kubectl"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+c.cp.AdminKubeconfig)
	return cmd
}

// TestAgentLogRotation runs a container that writes as fast as it can under
// an agent that rotates logs at 1 MiB and keeps 3 files: the log directory
// stays bounded while it writes, and kubectl logs (--tail, -f across
// rotations, --previous of a run whose log was rotated) still shows it.
func TestAgentLogRotation(t *testing.T) {
	const maxSize, maxFiles = 1 << 20, 3
	c := newCluster(t, "--container-log-max-size", "1Mi", "--container-log-max-files", strconv.Itoa(maxFiles))
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	t.Cleanup(func() { deleteAll(context.Background(), t, c) })

	// fast writes consecutive numbers at full speed (its log grows by
	// tens of MB/s: each number of a few bytes is a record of ~45);
	// burst writes 1..40000 (a log of ~1.8 MB: two files), then fails,
	// and runs again.
	c.create(ctx, t,
		newPod("fast", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: []string{"seq", "1", "1000000000"}}),
		newPod("burst", corev1.RestartPolicyAlways, corev1.Container{Name: "c", Image: c.busybox, Command: sh("seq 1 40000; exit 1")}))
	fast := c.waitPod(t, "fast", time.Minute, phase(corev1.PodRunning))
	dir := filepath.Join(c.agent.Dir, "logs", "default_fast_"+string(fast.UID), "c")

	// The directory stays bounded while the container writes: sampled
	// until rotation has replaced every file it held at the first look
	// several times over.
	seen := map[string]bool{}
	var samples int
	waitFor(t, "many rotations of fast's log", 2*time.Minute, func(context.Context) (bool, error) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return false, nil // not created yet
		}
		var total int64
		var names []string
		for _, e := range entries {
			fi, err := e.Info()
			if err != nil {
				continue // rotated away meanwhile
			}
			total += fi.Size()
			names = append(names, e.Name())
			if e.Name() != "0.log" {
				seen[e.Name()] = true
			}
		}
		// A rotation may be under way: its new file, empty, created
		// beside the old one, and the old one linked to its rotated name
		// before the oldest is removed: two names more for a moment.
		if len(names) > maxFiles+2 {
			t.Fatalf("%d log files, want at most %d: %q", len(names), maxFiles, names)
		}
		if limit := int64(maxFiles+1) * (maxSize + 64<<10); total > limit {
			t.Fatalf("log directory holds %d bytes, over %d: %q", total, limit, names)
		}
		samples++
		return len(seen) >= 3*maxFiles, nil
	})
	t.Logf("%d rotated files seen over %d samples", len(seen), samples)

	// --tail: the last lines are consecutive numbers.
	out, err := c.kubectl(ctx, t, "logs", "fast", "--tail", "5")
	if err != nil {
		t.Fatalf("kubectl logs --tail 5: %v: %s", err, out)
	}
	if nums := numbers(t, out); len(nums) != 5 || nums[4]-nums[0] != 4 {
		t.Errorf("kubectl logs --tail 5 = %q", out)
	}

	// -f across rotations: the lines keep coming, in order, past several
	// rotations' worth of bytes (a follower that falls behind by more than
	// the files kept loses lines, as kubelet's does, but never goes back).
	fctx, fcancel := context.WithTimeout(ctx, time.Minute)
	defer fcancel()
	cmd := c.kubectlCmd(fctx, t, "logs", "-f", "fast", "--tail", "1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var (
		bytes, lines int64
		prev         = -1
		gaps         int
	)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() && bytes < 4*maxSize {
		n, err := strconv.Atoi(sc.Text())
		if err != nil {
			t.Fatalf("kubectl logs -f: line %q", sc.Text())
		}
		if prev >= 0 && n <= prev {
			t.Fatalf("kubectl logs -f: %d after %d", n, prev)
		}
		if prev >= 0 && n != prev+1 {
			gaps++
		}
		prev = n
		bytes += int64(len(sc.Bytes()) + 1)
		lines++
	}
	fcancel()
	_ = cmd.Wait()
	if bytes < 4*maxSize {
		t.Fatalf("kubectl logs -f ended after %d bytes (%d lines): %v", bytes, lines, sc.Err())
	}
	t.Logf("kubectl logs -f: %d lines, %d bytes across rotations, %d gaps", lines, bytes, gaps)

	// --previous of a run whose log was rotated: the whole run, read
	// across its files.
	c.waitPod(t, "burst", 2*time.Minute, func(p *corev1.Pod) bool {
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].RestartCount >= 1
	})
	out, err = c.kubectl(ctx, t, "logs", "burst", "--previous")
	if err != nil {
		t.Fatalf("kubectl logs --previous: %v: %.300s", err, out)
	}
	nums := numbers(t, out)
	if len(nums) != 40000 || nums[0] != 1 || nums[len(nums)-1] != 40000 {
		t.Errorf("kubectl logs --previous burst: %d lines (%v…%v), want 1…40000", len(nums), nums[:min(len(nums), 1)], nums[max(len(nums)-1, 0):])
	}
	for i, n := range nums {
		if n != i+1 {
			t.Fatalf("kubectl logs --previous burst: line %d is %d", i+1, n)
		}
	}
	out, err = c.kubectl(ctx, t, "logs", "burst", "--previous", "--tail", "3", "--since", "1h")
	if err != nil || out != "39998\n39999\n40000\n" {
		t.Errorf("kubectl logs --previous --tail 3 --since 1h = %q, %v", out, err)
	}
	burst := c.pod(ctx, t, "burst")
	prevRun := filepath.Join(c.agent.Dir, "logs", "default_burst_"+string(burst.UID), "c")
	entries, err := os.ReadDir(prevRun)
	if err != nil {
		t.Fatal(err)
	}
	var rotated int
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "0.log.") {
			rotated++
		}
	}
	if rotated == 0 {
		t.Errorf("burst's first run was not rotated: %v", entries)
	}
}

// numbers parses lines of decimal numbers.
func numbers(t *testing.T, s string) []int {
	t.Helper()
	var out []int
	for _, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		n, err := strconv.Atoi(l)
		if err != nil {
			t.Fatalf("line %q of %s", l, fmt.Sprintf("%.200q", s))
		}
		out = append(out, n)
	}
	return out
}
