package pods

import (
	"errors"
	"io"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Termination messages, as kubelet keeps them: each container run gets an
// empty host file bind-mounted at its terminationMessagePath; what the
// program (or, for a unikernel, the shim: why the VM ended) writes there
// becomes state.terminated.message.

// maxTerminationMessage is kubelet's limit of a termination message, in bytes.
const maxTerminationMessage = 4096

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
