// Package conformance is `make conformance`: it starts a harness cluster
// whose only schedulable node is a Feather agent (with kube-proxy and the
// cluster DNS), builds the e2e suite's test images that can be built here
// (agnhost, busybox, nonewprivs, pause) into the cluster's registry under
// the names the suite expects (remapped with KUBE_TEST_REPO_LIST), runs the upstream
// e2e.test — the [Conformance] specs of [sig-node] and the volume specs of
// [sig-storage], not [Serial] or [Disruptive] — with the ginkgo CLI, reads
// its JUnit report, prints the counts and writes the table of every spec
// that did not pass, with its cause, into kubelet/README.md.
package conformance

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/containerd/v2/pkg/namespaces"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/feather-edge/feather/test/harness"
)

// NodeName is the Feather node's name.
const NodeName = "feather-conformance"

// Focus selects the specs: every [Conformance] spec of [sig-node], and of
// [sig-storage] the volume plugins that a node implements itself.
var Focus = []string{
	`\[sig-node\].*\[Conformance\]`,
	`\[sig-storage\] (ConfigMap|Secrets|Projected|Downward API volume|EmptyDir|HostPath).*\[Conformance\]`,
}

// Skip leaves out what must not run beside other specs or breaks the node.
const Skip = `\[Serial\]|\[Disruptive\]`

var start = time.Now()

// logf prints a progress line with the time since the program started.
func logf(format string, args ...any) {
	fmt.Printf("[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
}

// Main runs the command line (without the program name) and returns the
// exit code: 0 when the run completed (whatever the specs' results), 1 when
// it could not run, 2 on a usage error.
func Main(args []string) int {
	fs := flag.NewFlagSet("feather-conformance", flag.ContinueOnError)
	procs := fs.Int("procs", 6, "ginkgo processes running specs side by side (1: e2e.test alone, serially)")
	reportDir := fs.String("report-dir", "", "where the JUnit report, the suite's output and the agent's log go (default _output/conformance)")
	readme := fs.String("readme", "", "the README whose results table is rewritten (default kubelet/README.md; \"-\" for none)")
	timeout := fs.Duration("timeout", 2*time.Hour, "how long the suite may run")
	focus := fs.String("focus", "", "a regexp replacing the default selection (e.g. one spec's name, to rerun it)")
	dryRun := fs.Bool("dry-run", false, "list the selected specs without starting a cluster")
	reportOnly := fs.Bool("report-only", false, "start nothing: print the last run's results from --report-dir and rewrite the README table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	root, err := harness.RepoRoot()
	if err != nil {
		fmt.Fprintf(os.Stderr, "feather-conformance: %v\n", err)
		return 1
	}
	if *reportDir == "" {
		*reportDir = filepath.Join(root, "_output", "conformance")
	}
	if *readme == "" {
		*readme = filepath.Join(root, "kubelet", "README.md")
	}
	cfg := config{procs: *procs, reportDir: *reportDir, readme: *readme, timeout: *timeout, focus: Focus, dryRun: *dryRun}
	if *focus != "" {
		cfg.focus = []string{*focus}
	}
	if *reportOnly {
		err = report(cfg)
	} else {
		err = run(cfg)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "feather-conformance: %v\n", err)
		return 1
	}
	return 0
}

type config struct {
	procs             int
	reportDir, readme string
	timeout           time.Duration
	focus             []string
	dryRun            bool
}

// tools are the programs the run needs: _output/bin, from
// `make deps-conformance`.
type tools struct{ e2e, ginkgo, agnhost, nonewprivs, kubectl string }

func findTools() (tools, error) {
	var t tools
	var errs []error
	for _, p := range []struct {
		name string
		dst  *string
	}{{"e2e.test", &t.e2e}, {"ginkgo", &t.ginkgo}, {"agnhost", &t.agnhost}, {"nonewprivs", &t.nonewprivs}, {"kubectl", &t.kubectl}} {
		var err error
		if *p.dst, err = harness.Bin(p.name); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return t, fmt.Errorf("%w (make conformance runs make deps-conformance)", err)
	}
	return t, nil
}

func run(cfg config) error {
	t, err := findTools()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.reportDir, 0o755); err != nil {
		return err
	}
	if cfg.dryRun {
		return suite(context.Background(), t, cfg, nil, os.Stdout, true)
	}
	// A signal (^C, a SIGTERM) stops the suite and then the cluster, as
	// the end of a run does: nothing of it is left. The harness's steps
	// cannot be interrupted; one under way when the signal comes ends first.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	r := &harness.Program{Logf: logf, Exit: os.Exit}
	env := harness.New(r)
	logf("starting the control plane, containerd, a registry, CoreDNS, kube-proxy and the agent (node %s, no taints) in %s", NodeName, env.Dir)
	c := env.StartCluster(harness.ClusterOptions{Services: true, Agent: harness.AgentOptions{Name: NodeName,
		Args: []string{"--taints", "", "--log-level", "info"}}})
	if sigCtx.Err() != nil {
		return interrupted(r)
	}
	logf("node %s is Ready; registry at %s", NodeName, c.Registry.Host)
	repoList := filepath.Join(cfg.reportDir, "repo-list.yaml")
	if err := os.WriteFile(repoList, []byte(RepoList(c.Registry.Host)), 0o644); err != nil {
		r.Fatalf("%v", err)
	}
	envv := suiteEnv(t, c.ControlPlane.AdminKubeconfig, repoList)
	images, err := listImages(t.e2e, envv)
	if err != nil {
		r.Fatalf("%v", err)
	}
	ctx, cancel := context.WithTimeout(sigCtx, 5*time.Minute)
	skipped, err := pushImages(ctx, env, c, t, images)
	cancel()
	if sigCtx.Err() != nil {
		return interrupted(r)
	}
	if err != nil {
		r.Fatalf("%v", err)
	}
	for _, s := range skipped {
		logf("image %s is not built here: its specs fail on ErrImagePull", s)
	}
	began := time.Now()
	suiteLog, err := os.Create(filepath.Join(cfg.reportDir, "e2e.log"))
	if err != nil {
		r.Fatalf("%v", err)
	}
	logf("running the suite (%d ginkgo processes; its output also in %s)", cfg.procs, suiteLog.Name())
	serr := suite(sigCtx, t, cfg, envv, io.MultiWriter(os.Stdout, suiteLog), false)
	suiteLog.Close()
	took := time.Since(began)
	logf("suite ended after %s (%v)", took.Round(time.Second), serr)

	if err := drain(c); err != nil {
		logf("%v", err)
	}
	if b, err := os.ReadFile(c.Agent.LogFile()); err == nil {
		_ = os.WriteFile(filepath.Join(cfg.reportDir, "feather.log"), b, 0o644)
	}
	if leaks := r.Finish(); leaks != "" {
		logf("stopping the cluster reported: %s", leaks)
	}
	if sigCtx.Err() != nil {
		return errors.New("interrupted: the suite was stopped and its cluster removed; the last finished run's results stay")
	}

	if serr != nil && !errors.As(serr, new(*exec.ExitError)) {
		return fmt.Errorf("run the suite: %w", serr)
	}
	sum := Run{Duration: took, Procs: cfg.procs, Version: suiteVersion(t.e2e), Full: len(cfg.focus) == len(Focus) && cfg.focus[0] == Focus[0]}
	if b, err := json.Marshal(sum); err == nil {
		_ = os.WriteFile(filepath.Join(cfg.reportDir, runFile), b, 0o644)
	}
	return report(cfg)
}

// runFile, in the report directory, is the Run of the last run.
const runFile = "run.json"

// report prints the results of the run in cfg.reportDir and, for a run of
// the whole selection, rewrites the README's table.
func report(cfg config) error {
	var sum Run
	b, err := os.ReadFile(filepath.Join(cfg.reportDir, runFile))
	if err == nil {
		err = json.Unmarshal(b, &sum)
	}
	if err != nil {
		return fmt.Errorf("no finished run in %s: %w", cfg.reportDir, err)
	}
	specs, err := ReadJUnit(filepath.Join(cfg.reportDir, "junit_01.xml"))
	if err != nil {
		return fmt.Errorf("the suite wrote no report: %w", err)
	}
	sum.Counts = Count(specs)
	for _, s := range specs {
		if s.Result != Passed {
			fmt.Printf("%s: %s\n    %s\n", strings.ToUpper(string(s.Result)), s.Name, Cause(s))
		}
	}
	fmt.Printf("\nmake conformance: %s, in %s\n", sum.Counts, sum.Duration.Round(time.Second))
	if cfg.readme != "-" && sum.Full {
		if err := UpdateReadme(cfg.readme, Table(sum, specs)); err != nil {
			return err
		}
		fmt.Printf("results table written to %s\n", cfg.readme)
	}
	return nil
}

// RepoList is the KUBE_TEST_REPO_LIST file that sends the suite's images to
// the registry at host: registry.k8s.io/e2e-test-images/NAME (agnhost,
// busybox, nginx) to host/e2e-test-images/NAME, registry.k8s.io/NAME
// (pause) to host/NAME.
func RepoList(host string) string {
	return fmt.Sprintf("promoterE2eRegistry: %[1]s/e2e-test-images\ngcRegistry: %[1]s\ngcEtcdRegistry: %[1]s\n"+
		"sigStorageRegistry: %[1]s/sig-storage\ndockerLibraryRegistry: %[1]s/library\n", host)
}

func suiteEnv(t tools, kubeconfig, repoList string) []string {
	return append(os.Environ(), "KUBECONFIG="+kubeconfig, "KUBE_TEST_REPO_LIST="+repoList,
		"PATH="+filepath.Dir(t.kubectl)+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// suiteArgs are e2e.test's own flags.
func suiteArgs(kubeconfig, reportDir string) []string {
	return []string{"--kubeconfig=" + kubeconfig, "--provider=skeleton", "--report-dir=" + reportDir,
		"--non-blocking-taints=node-role.kubernetes.io/control-plane", "--allowed-not-ready-nodes=0",
		"--disable-log-dump", "--node-os-distro=debian"}
}

// suite runs the suite (or with dryRun lists what it would run) and returns
// its error: a failed spec makes it exit 1, so the error says little.
func suite(ctx context.Context, t tools, cfg config, envv []string, out io.Writer, dryRun bool) error {
	kubeconfig := ""
	for _, e := range envv {
		if k, ok := strings.CutPrefix(e, "KUBECONFIG="); ok {
			kubeconfig = k
		}
	}
	var cmd *exec.Cmd
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout+5*time.Minute)
	defer cancel()
	if cfg.procs <= 1 || dryRun {
		args := []string{"--ginkgo.skip=" + Skip, "--ginkgo.no-color", "--ginkgo.timeout=" + cfg.timeout.String()}
		for _, f := range cfg.focus {
			args = append(args, "--ginkgo.focus="+f)
		}
		if dryRun {
			args = append(args, "--ginkgo.dry-run", "--ginkgo.v", "--list-conformance-tests=false")
		}
		cmd = exec.CommandContext(ctx, t.e2e, append(args, suiteArgs(kubeconfig, cfg.reportDir)...)...)
	} else {
		args := []string{"--procs=" + strconv.Itoa(cfg.procs), "--skip=" + Skip, "--no-color", "--timeout=" + cfg.timeout.String()}
		for _, f := range cfg.focus {
			args = append(args, "--focus="+f)
		}
		args = append(append(args, t.e2e, "--"), suiteArgs(kubeconfig, cfg.reportDir)...)
		cmd = exec.CommandContext(ctx, t.ginkgo, args...)
	}
	cmd.Env, cmd.Stdout, cmd.Stderr = envv, out, out
	cmd.Dir = cfg.reportDir
	// Stopped, ginkgo is interrupted as by ^C, so that it ends the specs'
	// processes and their namespaces; it is killed if it has not ended a
	// minute later.
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = time.Minute
	return cmd.Run()
}

// suiteVersion is e2e.test's --version (its Kubernetes version).
func suiteVersion(e2e string) string {
	b, err := exec.Command(e2e, "--version").Output()
	if err != nil {
		return "(unknown version)"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "(unknown version)"
	}
	return f[len(f)-1]
}

// listImages returns the images the suite uses, as --list-images prints
// them with the repo list of envv applied.
func listImages(e2e string, envv []string) ([]string, error) {
	cmd := exec.Command(e2e, "--list-images")
	cmd.Env = envv
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("e2e.test --list-images: %w: %s", err, stderr.String())
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" {
			out = append(out, l)
		}
	}
	return out, nil
}

// imageName matches the name of an image reference without its registry
// prefix and tag: ".../e2e-test-images/agnhost:2.66.1" → "agnhost".
var imageName = regexp.MustCompile(`/([^/:]+):[^/]+$`)

// pushImages builds and pushes, of images, those that can be built here —
// agnhost, busybox, nonewprivs, pause — under their exact references, and
// returns the references of the others.
func pushImages(ctx context.Context, env *harness.Env, c *harness.Cluster, t tools, images []string) ([]string, error) {
	agnhost, err := os.ReadFile(t.agnhost)
	if err != nil {
		return nil, fmt.Errorf("agnhost image: %w", err)
	}
	nnp, err := os.ReadFile(t.nonewprivs)
	if err != nil {
		return nil, fmt.Errorf("nonewprivs image: %w", err)
	}
	var skipped []string
	for _, ref := range images {
		if !strings.HasPrefix(ref, c.Registry.Host+"/") {
			skipped = append(skipped, ref)
			continue
		}
		m := imageName.FindStringSubmatch(ref)
		if m == nil {
			skipped = append(skipped, ref)
			continue
		}
		local := "docker.io/feather-conformance/" + m[1] + ":build"
		tarball := filepath.Join(env.Dir, "conformance-"+m[1]+".oci.tar")
		err = nil
		if _, serr := os.Stat(tarball); serr != nil { // one build per image, pushed under each of its tags
			switch m[1] {
			case "agnhost":
				err = harness.WriteAgnhostImage(tarball, local, agnhost)
			case "busybox":
				err = harness.WriteBusyboxImage(tarball, local)
			case "nonewprivs":
				err = harness.WriteNonewprivsImage(tarball, local, nnp)
			case "pause":
				err = harness.WritePauseImage(tarball, local)
			default:
				skipped = append(skipped, ref)
				continue
			}
		}
		if err == nil {
			err = c.Containerd.Push(ctx, tarball, local, ref)
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", ref, err)
		}
		logf("pushed %s", ref)
	}
	return skipped, nil
}

// drain removes what the suite left on the node before the harness stops
// it: the suite's namespaces (it deletes them without waiting), their pods
// and containers. It cordons the node first.
func drain(c *harness.Cluster) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if _, err := c.Kube.CoreV1().Nodes().Patch(ctx, NodeName, types.StrategicMergePatchType,
		[]byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cordon %s: %w", NodeName, err)
	}
	keep := map[string]bool{"default": true, "kube-system": true, "kube-public": true, "kube-node-lease": true}
	onNode := metav1.ListOptions{FieldSelector: "spec.nodeName=" + NodeName}
	var last string
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		nss, err := c.Kube.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		if err != nil {
			return false, nil
		}
		for _, ns := range nss.Items {
			if !keep[ns.Name] && ns.DeletionTimestamp == nil {
				_ = c.Kube.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{})
			}
		}
		pods, err := c.Kube.CoreV1().Pods("").List(ctx, onNode)
		if err != nil {
			return false, nil
		}
		zero := int64(0)
		for _, p := range pods.Items {
			if p.DeletionTimestamp == nil {
				_ = c.Kube.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
			}
		}
		ctrs, err := c.Containerd.Client().Containers(namespaces.WithNamespace(ctx, "feather"))
		if err != nil {
			return false, nil
		}
		last = fmt.Sprintf("%d pods, %d containerd containers", len(pods.Items), len(ctrs))
		return len(pods.Items) == 0 && len(ctrs) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("the agent did not remove the suite's pods within 3 minutes (left: %s); stopping anyway", last)
	}
	logf("the suite's pods and their containers are removed")
	return nil
}

// interrupted stops the cluster of a run a signal interrupted before its
// suite began, and says so.
func interrupted(r *harness.Program) error {
	logf("interrupted: stopping the cluster")
	if leaks := r.Finish(); leaks != "" {
		logf("stopping the cluster reported: %s", leaks)
	}
	return errors.New("interrupted before the suite began; the cluster was removed")
}
