package pods

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeUserAgent is what kubelet's HTTP probes send, for our version.
const probeUserAgent = "kube-probe/1.37"

// maxProbeOutput is how much of a probe's output is kept (kubelet: 10 KiB).
const maxProbeOutput = 10 << 10

// target is where a container's probes and hooks go.
type target struct {
	c    *corev1.Container
	host string // the pod IP (the host's for hostNetwork pods)
	// exec, if set, keeps the run's task and process spec for its exec
	// probes once loaded; without it each exec loads them.
	exec *execCache
}

// execCache holds the execTarget of one container run, loaded by the first
// exec that needs it. A failed load is not kept: the next exec tries again.
type execCache struct {
	mu sync.Mutex
	t  *execTarget
}

// get returns the cached target of run in, loading it with load if there
// is none yet.
func (c *execCache) get(ctx context.Context, load func(context.Context) (*execTarget, error)) (*execTarget, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.t != nil {
		return c.t, nil
	}
	t, err := load(ctx)
	if err != nil {
		return nil, err
	}
	c.t = t
	return t, nil
}

// port resolves a probe's port: a number, or the name of one of the
// container's ports.
func (tg target) port(p intstr.IntOrString) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number: %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil && n > 0 && n <= 65535 {
		return n, nil
	}
	for _, cp := range tg.c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	return 0, fmt.Errorf("couldn't find port: %v in %s", p.StrVal, tg.c.Name)
}

// httpGet runs an HTTPGetAction as kubelet's HTTP prober: 2xx and 3xx
// succeed; redirects are followed to the same host only (one elsewhere
// succeeds, as kubelet's does); the body is read up to 10 KiB.
func (tg target) httpGet(ctx context.Context, a *corev1.HTTPGetAction, timeout time.Duration) probeOutcome {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := tg.httpRequest(ctx, a, probeUserAgent)
	if err != nil {
		return probeOutcome{errored: true, output: err.Error()}
	}
	resp, err := httpClient(req.URL.Hostname()).Do(req)
	if err != nil {
		return probeOutcome{output: err.Error()}
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeOutput))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return probeOutcome{ok: true, output: string(body)}
	}
	return probeOutcome{output: fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)}
}

// httpRequest is the GET request of a, as kubelet makes it: the pod IP
// unless a names a host, a's headers (Host among them), userAgent unless a
// sets one, Accept */*.
func (tg target) httpRequest(ctx context.Context, a *corev1.HTTPGetAction, userAgent string) (*http.Request, error) {
	port, err := tg.port(a.Port)
	if err != nil {
		return nil, err
	}
	host := a.Host
	if host == "" {
		host = tg.host
	}
	if host == "" {
		return nil, errors.New("the pod has no IP yet")
	}
	scheme := strings.ToLower(string(a.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := a.Path
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(scheme + "://" + net.JoinHostPort(host, strconv.Itoa(port)) + path)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Accept", "*/*")
	for _, h := range a.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Set(h.Name, h.Value)
	}
	return req, nil
}

// probeTransport carries every HTTP probe and hook, as kubelet's prober has
// one transport: no certificate checks, no keep-alives (each probe opens a
// connection of its own), no proxy, no compression (no Accept-Encoding).
// One per probe would redo its setup (TLS and HTTP/2 configuration) every
// time.
var probeTransport = &http.Transport{
	TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // as kubelet: probes do not verify
	DisableKeepAlives: true, Proxy: nil, DisableCompression: true,
}

// httpClient is kubelet's probe client: probeTransport, redirects followed
// on host only.
func httpClient(host string) *http.Client {
	return &http.Client{
		Transport: probeTransport,
		CheckRedirect: func(r *http.Request, via []*http.Request) error {
			if r.URL.Hostname() != host {
				return http.ErrUseLastResponse
			}
			if len(via) >= 10 {
				return errors.New("stopped after 10 redirects")
			}
			return nil
		},
	}
}

// tcpSocket connects to the port, as kubelet's TCP prober.
func (tg target) tcpSocket(ctx context.Context, a *corev1.TCPSocketAction, timeout time.Duration) probeOutcome {
	port, err := tg.port(a.Port)
	if err != nil {
		return probeOutcome{errored: true, output: err.Error()}
	}
	host := a.Host
	if host == "" {
		host = tg.host
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
	if err != nil {
		return probeOutcome{output: err.Error()}
	}
	_ = conn.Close()
	return probeOutcome{ok: true}
}

// grpcCheck asks the gRPC health service (grpc.health.v1) at the pod IP,
// as kubelet's gRPC prober: SERVING succeeds.
func (tg target) grpcCheck(ctx context.Context, a *corev1.GRPCAction, timeout time.Duration) probeOutcome {
	addr := net.JoinHostPort(tg.host, strconv.Itoa(int(a.Port)))
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithUserAgent(probeUserAgent))
	if err != nil {
		return probeOutcome{errored: true, output: err.Error()}
	}
	defer conn.Close()
	service := ""
	if a.Service != nil {
		service = *a.Service
	}
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		if ctx.Err() != nil {
			return probeOutcome{output: fmt.Sprintf("timeout: health rpc did not complete within %v", timeout)}
		}
		return probeOutcome{output: fmt.Sprintf("failed to connect service %q within %v: %v", addr, timeout, err)}
	}
	if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return probeOutcome{output: fmt.Sprintf("service unhealthy (responded with %q)", resp.GetStatus().String())}
	}
	return probeOutcome{ok: true}
}

// limitedBuffer keeps the first n bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	n int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := b.n - b.Len(); room > 0 {
		b.Buffer.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// execCheck runs an exec probe in run in of a container: exit code 0
// succeeds; a command past the timeout fails ("timed out"); one that cannot
// be run errors.
func (p *Provider) execCheck(ctx context.Context, tg target, in instance, a *corev1.ExecAction, timeout time.Duration) probeOutcome {
	out := &limitedBuffer{n: maxProbeOutput}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var code int
	var err error
	if tg.exec == nil {
		code, err = p.execIn(ctx, in, a.Command, ExecIO{Output: out})
	} else {
		var t *execTarget
		t, err = tg.exec.get(ctx, func(ctx context.Context) (*execTarget, error) { return p.execTargetOf(ctx, in) })
		if err == nil {
			code, err = p.execWith(ctx, in, t, a.Command, ExecIO{Output: out})
		}
	}
	switch {
	case err != nil && errors.Is(err, context.DeadlineExceeded):
		return probeOutcome{output: fmt.Sprintf("command %q timed out", strings.Join(a.Command, " "))}
	case err != nil:
		return probeOutcome{errored: true, output: err.Error()}
	case code != 0:
		return probeOutcome{output: out.String()}
	}
	return probeOutcome{ok: true, output: out.String()}
}

// check runs probe pr once against run in of container c.
func (p *Provider) check(ctx context.Context, tg target, in instance, pr *corev1.Probe, timeout time.Duration) probeOutcome {
	switch {
	case pr.Exec != nil:
		return p.execCheck(ctx, tg, in, pr.Exec, timeout)
	case pr.HTTPGet != nil:
		return tg.httpGet(ctx, pr.HTTPGet, timeout)
	case pr.TCPSocket != nil:
		return tg.tcpSocket(ctx, pr.TCPSocket, timeout)
	case pr.GRPC != nil:
		return tg.grpcCheck(ctx, pr.GRPC, timeout)
	}
	return probeOutcome{errored: true, output: "missing probe handler"}
}
