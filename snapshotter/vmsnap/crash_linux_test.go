package vmsnap

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/feather-edge/feather/internal/prereq"
	"github.com/feather-edge/feather/vmimage"
)

// crashChildEnv makes the test binary a crash child (see crashChild)
// instead of running the tests: its value is "ROOT KEY NAME".
const crashChildEnv = "FEATHER_VMSNAP_CRASH_CHILD"

func TestMain(m *testing.M) {
	if v := os.Getenv(crashChildEnv); v != "" {
		os.Exit(crashChild(v))
	}
	os.Exit(m.Run())
}

// crashChild opens the snapshotter at ROOT, says "commit" on its standard
// output, commits the active snapshot KEY as NAME, says "done", and waits
// for its standard input to close (the parent kills it before, or after,
// "done": a crash at a point of the parent's choosing).
func crashChild(arg string) int {
	f := strings.Fields(arg)
	if len(f) != 3 {
		fmt.Fprintf(os.Stderr, "%s=%q: want ROOT KEY NAME\n", crashChildEnv, arg)
		return 2
	}
	sn, err := New(f[0])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := namespaces.WithNamespace(context.Background(), "test")
	fmt.Println("commit")
	if err := sn.Commit(ctx, f[2], f[1]); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("done")
	bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// TestCrashDuringCommit kills the snapshotter (SIGKILL) at points spread
// over a Commit of an active snapshot of many files — the commit of an
// unpacked layer, or of a container's snapshot — and opens it again each
// time: the snapshot is either still active (and commits now) or committed
// with its files, never both nor neither; a Commit that returned is
// durable; the other snapshots (a VM image's layers and a container's
// instance disk on them) are untouched; and after Cleanup no directory is
// left that no snapshot owns.
func TestCrashDuringCommit(t *testing.T) {
	prereq.Root(t)
	ctx := namespaces.WithNamespace(context.Background(), "test")
	root := t.TempDir()
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	top := commitChain(t, ctx, sn, "vm", layer{vmimage.DiskPath: bytes.Repeat([]byte{7}, 1<<20)})
	mounts, err := sn.Prepare(ctx, "ctr", top)
	if err != nil {
		t.Fatal(err)
	}
	inst := filepath.Join(upperOf(t, mounts), vmimage.InstanceDiskPath)
	instBytes, err := os.ReadFile(inst)
	if err != nil {
		t.Fatal(err)
	}
	sn.Close()

	const files = 4000
	// prepare makes active snapshot key on top with files files; the
	// snapshotter is closed again for the child to open.
	prepare := func(key string) {
		t.Helper()
		sn, err := New(root)
		if err != nil {
			t.Fatal(err)
		}
		defer sn.Close()
		m, err := sn.Prepare(ctx, key, top)
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(upperOf(t, m), "data")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range files {
			if err := os.WriteFile(filepath.Join(dir, strconv.Itoa(i)), []byte(strconv.Itoa(i)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	// crash commits key as name in a child, killing it delay after it
	// began (never, for a negative delay), and reports whether the child
	// had said its Commit returned and how long the Commit took or ran.
	crash := func(key, name string, delay time.Duration) (returned bool, took time.Duration) {
		t.Helper()
		cmd := exec.Command(os.Args[0])
		cmd.Env = append(os.Environ(), crashChildEnv+"="+root+" "+key+" "+name)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		defer stdin.Close()
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		lines := make(chan string)
		go func() {
			defer close(lines)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				lines <- sc.Text()
			}
		}()
		if l := <-lines; l != "commit" {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("crash child said %q, want commit", l)
		}
		start := time.Now()
		var kill <-chan time.Time
		if delay >= 0 {
			kill = time.After(delay) // the crash point, not a wait for something
		}
		select {
		case l := <-lines:
			returned = l == "done"
			took = time.Since(start)
			if !returned {
				t.Fatalf("crash child said %q, want done", l)
			}
			if delay >= 0 {
				<-kill
			}
		case <-kill:
			took = time.Since(start)
		}
		cmd.Process.Kill()
		cmd.Wait()
		// What the child printed before it died counts.
		for l := range lines {
			returned = returned || l == "done"
		}
		return returned, took
	}

	// Calibrate: how long one Commit of this many files takes here.
	prepare("calibrate")
	if ok, took := crash("calibrate", "calibrated", -1); !ok {
		t.Fatal("the calibration commit did not return")
	} else {
		t.Logf("a Commit of %d files takes %v", files, took)
		const trials = 8
		var active, committed, killedEarly int
		for i := range trials {
			key, name := "active-"+strconv.Itoa(i), "committed-"+strconv.Itoa(i)
			prepare(key)
			delay := took * time.Duration(i) / trials
			returned, _ := crash(key, name, delay)
			if !returned {
				killedEarly++
			}
			sn, err := New(root)
			if err != nil {
				t.Fatalf("trial %d (killed %v into the Commit): the snapshotter does not open: %v", i, delay, err)
			}
			a, aErr := sn.Stat(ctx, key)
			c, cErr := sn.Stat(ctx, name)
			switch {
			case aErr == nil && cErr != nil && a.Kind == snapshots.KindActive && !returned:
				active++
				if err := sn.Commit(ctx, name, key); err != nil {
					t.Errorf("trial %d: committing the snapshot left active by the crash: %v", i, err)
				}
			case aErr != nil && cErr == nil && c.Kind == snapshots.KindCommitted:
				committed++
			default:
				t.Errorf("trial %d (killed %v in, commit returned %v): active %+v (%v), committed %+v (%v): want exactly one", i, delay, returned, a, aErr, c, cErr)
			}
			checkCommitted(t, ctx, sn, name, files)
			sn.Close()
		}
		t.Logf("%d trials: %d killed before the Commit returned; after the restart %d still active, %d committed", trials, killedEarly, active, committed)
		if killedEarly == 0 {
			t.Errorf("no trial killed the snapshotter before its Commit returned: the test did not test a crash")
		}
	}

	sn, err = New(root)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	if b, err := os.ReadFile(inst); err != nil || !bytes.Equal(b, instBytes) {
		t.Errorf("the container's instance disk changed across the crashes (%v)", err)
	}
	if _, err := sn.Stat(ctx, "ctr"); err != nil {
		t.Errorf("the container's snapshot: %v", err)
	}
	if err := sn.Cleanup(ctx); err != nil {
		t.Fatal(err)
	}
	var owned int
	if err := sn.Walk(ctx, func(context.Context, snapshots.Info) error { owned++; return nil }); err != nil {
		t.Fatal(err)
	}
	dirs, err := os.ReadDir(filepath.Join(root, "snapshots"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dirs) != owned {
		t.Errorf("after Cleanup the snapshotter's root holds %d snapshot directories for %d snapshots", len(dirs), owned)
	}
}

// checkCommitted checks that committed snapshot name reads the files its
// active snapshot was given, through a view of it.
func checkCommitted(t *testing.T, ctx context.Context, sn *Snapshotter, name string, files int) {
	t.Helper()
	key := "view-" + name
	m, err := sn.View(ctx, key, name)
	if err != nil {
		t.Errorf("view of %s: %v", name, err)
		return
	}
	defer sn.Remove(ctx, key)
	var dir string
	for _, o := range m[0].Options {
		if v, ok := strings.CutPrefix(o, "lowerdir="); ok {
			dir = strings.Split(v, ":")[0] // the newest layer first
		}
	}
	if dir == "" {
		t.Errorf("view of %s: mounts %+v have no lowerdir", name, m)
		return
	}
	entries, err := os.ReadDir(filepath.Join(dir, "data"))
	if err != nil || len(entries) != files {
		t.Errorf("%s holds %d of its %d files (%v)", name, len(entries), files, err)
		return
	}
	for _, i := range []int{0, files / 2, files - 1} {
		b, err := os.ReadFile(filepath.Join(dir, "data", strconv.Itoa(i)))
		if err != nil || string(b) != strconv.Itoa(i) {
			t.Errorf("%s's file %d reads %q (%v)", name, i, b, err)
		}
	}
}
