package harness

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// Registry is an OCI registry (distribution's registry, pinned by
// `make deps`) serving plain HTTP on 127.0.0.1, its storage under Dir.
type Registry struct {
	// Dir holds its config, storage and log.
	Dir string
	// Host is host:port, as image references and --plain-http clients use it.
	Host string

	proc *Process
}

// StartRegistry starts a registry and returns once GET /v2/ answers 200. It
// fails t if it does not.
func (e *Env) StartRegistry() *Registry {
	e.t.Helper()
	bin := RequiresBin(e.t, "registry")
	r := &Registry{Dir: filepath.Join(e.Dir, "registry")}
	e.onClose(r.stop)
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	if err := r.start(ctx, bin); err != nil {
		e.t.Fatalf("harness: registry: %v", err)
	}
	return r
}

func (r *Registry) start(ctx context.Context, bin string) error {
	if err := os.MkdirAll(r.Dir, 0o700); err != nil {
		return err
	}
	ports, err := freePorts(1)
	if err != nil {
		return err
	}
	r.Host = hostPort(ports[0])
	config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(r.Dir, "data"), r.Host)
	cfgPath := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		return err
	}
	// No tracing exporter: it would try to reach a collector.
	r.proc, err = startProcess("registry", filepath.Join(r.Dir, "registry.log"),
		[]string{"OTEL_TRACES_EXPORTER=none"}, bin, "serve", cfgPath)
	if err != nil {
		return err
	}
	return r.proc.waitReady(ctx, httpOK(http.DefaultClient, "http://"+r.Host+"/v2/"))
}

func (r *Registry) stop() error {
	if r.proc != nil {
		r.proc.Stop(10 * time.Second)
	}
	return nil
}
