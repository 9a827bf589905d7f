package pods

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/feather-edge/feather/kubelet/logs"
)

// Termination messages, as kubelet keeps them: each container run gets an
// empty host file bind-mounted at its terminationMessagePath; what the
// program (or, for a unikernel, the shim: why the VM ended) writes there
// becomes state.terminated.message.

// Kubelet's limits: a termination message file is read up to 4096 bytes;
// one taken from the log (FallbackToLogsOnError) is the last 2048 bytes of
// the last 80 lines.
const (
	maxTerminationMessage         = 4096
	maxTerminationMessageLogLines = 80
	maxTerminationMessageLogBytes = 2048
)

// vmTerminationPath is where the OSv shim looks for the termination log: a
// VM has no file system of the host's to mount it elsewhere.
const vmTerminationPath = "/dev/termination-log"

// terminationDir holds a pod's termination logs.
func (p *Provider) terminationDir(uid types.UID) string {
	return filepath.Join(p.cfg.StateDir, "pods", string(uid), "termination")
}

// terminationLog is the host file of container run id.
func (p *Provider) terminationLog(uid types.UID, id string) string {
	return filepath.Join(p.terminationDir(uid), id)
}

// terminationMount makes container run id's termination log, empty, and
// returns its mount for c (at vmTerminationPath for a VM).
func (p *Provider) terminationMount(uid types.UID, id string, c *corev1.Container, vm bool) (specs.Mount, error) {
	host := p.terminationLog(uid, id)
	if err := os.MkdirAll(filepath.Dir(host), 0o755); err != nil {
		return specs.Mount{}, err
	}
	// 0666: the container's user, whoever it is, may write it.
	if err := os.WriteFile(host, nil, 0o666); err != nil {
		return specs.Mount{}, err
	}
	if err := os.Chmod(host, 0o666); err != nil {
		return specs.Mount{}, err
	}
	dest := c.TerminationMessagePath
	if dest == "" || vm {
		dest = vmTerminationPath
	}
	return specs.Mount{Type: "bind", Source: host, Destination: dest, Options: []string{"rbind", "rw"}}, nil
}

// terminationMessage reads container run id's termination message, at most
// kubelet's 4096 bytes; "" when there is none.
func (p *Provider) terminationMessage(uid types.UID, id string) string {
	f, err := os.Open(p.terminationLog(uid, id))
	if err != nil {
		return ""
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxTerminationMessage))
	if err != nil && !errors.Is(err, io.EOF) {
		return ""
	}
	return string(b)
}

// logTail is the termination message of a failed run whose policy is
// FallbackToLogsOnError and whose message file is empty, as kubelet's
// readLastStringFromContainerLogs: the last 2048 bytes of the last 80 lines
// of its log, both streams, rotated files included. labels are the run's
// container labels.
func (p *Provider) logTail(labels map[string]string, in instance) string {
	path := p.runLogPath(labels, in)
	var b bytes.Buffer
	if err := logs.Read(context.Background(), path, logs.Options{Tail: maxTerminationMessageLogLines}, nil, &b); err != nil {
		return fmt.Sprintf("Error on reading termination message from logs: %v", err)
	}
	out := b.Bytes()
	if len(out) > maxTerminationMessageLogBytes {
		out = out[len(out)-maxTerminationMessageLogBytes:]
	}
	return string(out)
}

// logDrainWait bounds how long the agent waits for a run's logger to write
// the run's last output before it takes the termination message from the log.
const logDrainWait = 3 * time.Second

// runLogPath is the log file of run in, whose container has labels.
func (p *Provider) runLogPath(labels map[string]string, in instance) string {
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name, pod.UID = labels[LabelPodNamespace], labels[LabelPodName], types.UID(labels[LabelPodUID])
	return logs.Path(p.podLogDir(pod), in.Name, in.Attempt)
}

// fallsBackToLogs reports whether exited run in takes its termination
// message from its log: FallbackToLogsOnError, a failure and an empty
// message file.
func (p *Provider) fallsBackToLogs(labels map[string]string, uid types.UID, in instance) bool {
	return in.ExitCode != 0 && labels[LabelFallbackToLogs] == "true" && p.terminationMessage(uid, in.ID) == ""
}

// runMessage is the termination message of exited run in of pod uid, whose
// container has labels: its message file, or with FallbackToLogsOnError and
// a failure, the end of its log.
func (p *Provider) runMessage(labels map[string]string, uid types.UID, in instance) string {
	if p.fallsBackToLogs(labels, uid, in) {
		return p.logTail(labels, in)
	}
	return p.terminationMessage(uid, in.ID)
}
