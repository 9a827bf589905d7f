package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/test/leak"
)

// TestOSvConcurrent boots five VMs at once; each prints what it was given.
func TestOSvConcurrent(t *testing.T) {
	env, ctrd := osvEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var wg sync.WaitGroup
	for i := range 5 {
		wg.Go(func() {
			id := fmt.Sprintf("many-%d", i)
			out, code := ctrRun(ctx, t, ctrd, directRef, id, "/args", id)
			if code != 0 || !strings.Contains(out, "arg[1]="+id+"\n") {
				t.Errorf("%s: exit %d, output:\n%s", id, code, out)
			}
		})
	}
	wg.Wait()
	assertNoLeaks(t, env)
}

// TestOSvSurvival restarts containerd under a running VM, which keeps
// running and stays controllable; then kills its shim with SIGKILL, after
// which containerd reports the task exited and nothing is left.
func TestOSvSurvival(t *testing.T) {
	env, ctrd := osvEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	nctx := namespaces.WithNamespace(ctx, ns)
	runDetached(nctx, t, ctrd, "survivor")
	if err := ctrd.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := ctrd.Ctr(ctx, "-n", ns, "task", "ls")
	if err != nil || !strings.Contains(out, "survivor") || !strings.Contains(out, "RUNNING") {
		t.Fatalf("after a containerd restart, ctr task ls = %q (%v), want survivor RUNNING", out, err)
	}
	exitCh, err := loadTask(nctx, t, ctrd, "survivor").Wait(nctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "task", "kill", "-s", "SIGKILL", "survivor"); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exitCh:
		if st.ExitCode() != 137 {
			t.Errorf("exit after SIGKILL = %d, want 137", st.ExitCode())
		}
	case <-ctx.Done():
		t.Fatal("no exit after SIGKILL")
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "task", "delete", "survivor"); err != nil {
		t.Fatal(err)
	}

	victim := runDetached(nctx, t, ctrd, "victim")
	exitCh, err = victim.Wait(nctx)
	if err != nil {
		t.Fatal(err)
	}
	procs, err := leak.Processes(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	shim := 0
	for _, p := range procs {
		if strings.Contains(p.Cmdline, "containerd-shim-osv-v1") && strings.Contains(p.Cmdline, "-id victim") {
			shim = p.Pid
		}
	}
	if shim == 0 {
		t.Fatalf("no shim of victim among %+v", procs)
	}
	if err := syscall.Kill(shim, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	select {
	case st := <-exitCh:
		t.Logf("after the shim's SIGKILL containerd reports exit %d", st.ExitCode())
	case <-ctx.Done():
		t.Fatal("containerd did not report the task exited after its shim was killed")
	}
	// containerd cleans up after the dead shim by running `shim delete`
	// in the background, and then drops the task: wait for both (the exit
	// above comes as soon as the shim's connection breaks, before that).
	deadline := time.Now().Add(30 * time.Second)
	for {
		procs, err := leak.Processes(env.Dir)
		if err != nil {
			t.Fatal(err)
		}
		_, serr := victim.Status(nctx)
		if errdefs.IsNotFound(serr) && !slices.ContainsFunc(procs, func(p leak.Proc) bool { return strings.Contains(p.Cmdline, "-id victim") }) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the dead shim's cleanup still runs after 30 s: %+v", procs)
		}
		time.Sleep(100 * time.Millisecond) // polling /proc: no event marks the end of a process that is not ours
	}
	if _, err := ctrd.Ctr(ctx, "-n", ns, "task", "delete", "victim"); err != nil && !strings.Contains(err.Error(), "not found") {
		t.Fatal(err)
	}
	for _, id := range []string{"survivor", "victim"} {
		if _, err := ctrd.Ctr(ctx, "-n", ns, "container", "delete", id); err != nil {
			t.Fatal(err)
		}
	}
	// Nothing of the VMs may be left: no qemu, no virtiofsd.
	procs, err = leak.Processes(env.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		if !strings.Contains(p.Cmdline, "bin/containerd ") {
			t.Errorf("left running after the shim died: %d %s", p.Pid, p.Cmdline)
		}
	}
	assertNoLeaks(t, env)
}
