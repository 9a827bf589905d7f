// Package shim is the shim binary's side of containerd's shim protocol
// (runtime v2, bootstrap API): the start, delete and -info actions, and the
// daemon serving the task API over ttrpc on the socket start handed it,
// publishing events to containerd's ttrpc socket.
//
// It does what containerd's pkg/shim does for this shim, without its import
// of the task API's gRPC service (google.golang.org/grpc, initialised at
// start, was half the shim's binary and a third of its anonymous memory)
// and without its plugin registry: one service, given by the caller.
//
// Adapted from containerd's pkg/shim (Copyright The containerd Authors,
// Apache License 2.0): its flags, actions, socket addresses and event
// publisher, kept as containerd's shims behave.
package shim

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	bootapi "github.com/containerd/containerd/api/runtime/bootstrap/v1"
	"github.com/containerd/containerd/api/types"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/shutdown"
	"github.com/containerd/fifo"
	"github.com/containerd/log"
	"github.com/containerd/ttrpc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/feather-edge/feather/shim-osv/taskapi"
)

// Manager is the shim's start and delete actions and its runtime info.
type Manager interface {
	// Name is the runtime's name (io.containerd.osv.v1).
	Name() string
	// Start launches the daemon (or finds the one of the container's
	// group) and returns the address it serves.
	Start(ctx context.Context, params *bootapi.BootstrapParams) (*bootapi.BootstrapResult, error)
	// Stop cleans up after a daemon that is gone, for container id; the
	// working directory is its bundle.
	Stop(ctx context.Context, id string) (StopStatus, error)
	// Info describes the runtime; optionsR holds the runtime's options.
	Info(ctx context.Context, optionsR io.Reader) (*types.RuntimeInfo, error)
}

// StopStatus is what delete reports of the container it cleaned up.
type StopStatus struct {
	Pid        int
	ExitStatus int
	ExitedAt   time.Time
}

// Service is the task API the daemon serves.
type Service interface {
	RegisterTTRPC(*ttrpc.Server) error
}

// Daemon is what a daemon's service is made from.
type Daemon struct {
	// Namespace is containerd's namespace of the daemon's containers.
	Namespace string
	// ID is the container the daemon was started for.
	ID string
	// GRPCAddress is containerd's gRPC socket (-address).
	GRPCAddress string
	// TTRPCAddress is containerd's ttrpc socket, where events go.
	TTRPCAddress string
	// Debug is set when containerd logs at debug level.
	Debug bool
	// Publisher sends events to containerd; the service owns it and
	// closes it.
	Publisher Publisher
	// Shutdown ends the daemon; the service calls it on the task API's
	// Shutdown and registers what must run before the daemon exits.
	Shutdown shutdown.Service
}

// NewService makes the service a daemon serves; ctx carries the namespace
// and the logger.
type NewService func(ctx context.Context, d Daemon) (Service, error)

// ttrpcAddressEnv names containerd's ttrpc socket in the shim's environment.
const ttrpcAddressEnv = "TTRPC_ADDRESS"

type flags struct {
	debug, version, info                       bool
	namespace, id, socket, debugSocket, bundle string
	address, publishBinary, action             string
}

func parseFlags() flags {
	var f flags
	flag.BoolVar(&f.debug, "debug", false, "enable debug output in logs")
	flag.BoolVar(&f.version, "v", false, "")
	flag.BoolVar(&f.version, "version", false, "show the shim version and exit")
	flag.BoolVar(&f.info, "info", false, "get the option protobuf from stdin, print the shim info protobuf to stdout, and exit")
	flag.StringVar(&f.namespace, "namespace", "", "namespace that owns the shim")
	flag.StringVar(&f.id, "id", "", "id of the task")
	flag.StringVar(&f.socket, "socket", "", "socket path to serve")
	flag.StringVar(&f.debugSocket, "debug-socket", "", "debug socket path to serve")
	flag.StringVar(&f.bundle, "bundle", "", "path to the bundle if not workdir")
	flag.StringVar(&f.address, "address", "", "grpc address back to main containerd")
	flag.StringVar(&f.publishBinary, "publish-binary", "", "unused: events go to $"+ttrpcAddressEnv)
	flag.Parse()
	f.action = flag.Arg(0)
	return f
}

// Run runs the shim binary as containerd asked (the action in its
// arguments) and exits the process on error.
func Run(ctx context.Context, m Manager, newService NewService) {
	ctx = log.WithLogger(ctx, log.G(ctx).WithField("runtime", m.Name()))
	if err := run(ctx, m, newService); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %s", m.Name(), err)
		os.Exit(1)
	}
}

func run(ctx context.Context, m Manager, newService NewService) error {
	f := parseFlags()
	switch {
	case f.version:
		fmt.Printf("%s:\n  Runtime:    %s\n  Go version: %s\n\n", filepath.Base(os.Args[0]), m.Name(), runtime.Version())
		return nil
	case f.info:
		info, err := m.Info(ctx, os.Stdin)
		if err != nil {
			return err
		}
		return writeProto(info)
	case f.namespace == "":
		return errors.New("shim namespace cannot be empty")
	}
	setRuntime()
	// SIGPIPE must not kill the shim (its stderr is a FIFO); SIGTERM and
	// SIGINT end the daemon, and are ignored by the short actions.
	signals := make(chan os.Signal, 32)
	signal.Notify(signals, unix.SIGTERM, unix.SIGINT, unix.SIGPIPE)

	ctx = namespaces.WithNamespace(ctx, f.namespace)
	ctx, sd := shutdown.WithShutdown(ctx)
	defer sd.Shutdown()

	switch f.action {
	case "delete":
		ss, err := m.Stop(ctx, f.id)
		if err != nil {
			return err
		}
		return writeProto(&taskapi.DeleteResponse{Pid: uint32(ss.Pid), ExitStatus: uint32(ss.ExitStatus),
			ExitedAt: timestamppb.New(ss.ExitedAt)})
	case "start":
		// Bounded: the bootstrap parameters are small.
		input, err := io.ReadAll(io.LimitReader(os.Stdin, 10<<20))
		if err != nil {
			return fmt.Errorf("read bootstrap parameters: %w", err)
		}
		params, err := parseBootstrapParams(input, f.id, f.namespace)
		if err != nil {
			return err
		}
		// For the daemon and delete, which get no parameters.
		if dir := params.GetSocketDir(); dir != "" {
			if err := writeSocketDir(dir); err != nil {
				return fmt.Errorf("write socket dir link: %w", err)
			}
		}
		result, err := m.Start(ctx, params)
		if err != nil {
			return err
		}
		return writeProto(result)
	}
	return serve(ctx, f, sd, signals, newService)
}

// serve runs the daemon until it is shut down (the task API's Shutdown, or
// SIGTERM/SIGINT).
func serve(ctx context.Context, f flags, sd shutdown.Service, signals chan os.Signal, newService NewService) error {
	if err := setLogger(ctx, f.debug); err != nil {
		return err
	}
	ttrpcAddress := os.Getenv(ttrpcAddressEnv)
	publisher := NewPublisher(ttrpcAddress)
	svc, err := newService(ctx, Daemon{Namespace: f.namespace, ID: f.id, GRPCAddress: f.address,
		TTRPCAddress: ttrpcAddress, Debug: f.debug, Publisher: publisher, Shutdown: sd})
	if err != nil {
		_ = publisher.Close()
		return err
	}
	server, err := ttrpc.NewServer(ttrpc.WithServerHandshaker(ttrpc.UnixSocketRequireSameUser()))
	if err != nil {
		return fmt.Errorf("create ttrpc server: %w", err)
	}
	if err := svc.RegisterTTRPC(server); err != nil {
		return fmt.Errorf("register service: %w", err)
	}
	l, err := listener(f.socket)
	if err != nil {
		return err
	}
	go func() {
		defer l.Close()
		if err := server.Serve(ctx, l); err != nil && !errors.Is(err, net.ErrClosed) {
			log.G(ctx).WithError(err).Fatal("containerd-shim: ttrpc server failure")
		}
	}()
	wd, _ := os.Getwd()
	logger := log.G(ctx).WithFields(log.Fields{"pid": os.Getpid(), "path": wd, "namespace": f.namespace})
	dump := make(chan os.Signal, 1)
	signal.Notify(dump, unix.SIGUSR1)
	go func() {
		for range dump {
			dumpStacks(logger)
		}
	}()
	logger.Debug("serving")
	for done := false; !done; {
		select {
		case s := <-signals:
			if s == unix.SIGTERM || s == unix.SIGINT {
				logger.WithField("signal", s).Debug("caught exit signal")
				sd.Shutdown()
			}
		case <-ctx.Done():
			done = true
		}
	}
	cleanupSockets(ctx, f)
	select {
	case <-sd.Done():
		return nil
	case <-time.After(5 * time.Second):
		return errors.New("shim shutdown timeout")
	}
}

// setRuntime keeps the daemon small, as containerd's shims do: a low GC
// target, memory returned to the OS every 30 s, and few threads running Go
// code — one when start asked for it (DaemonEnv), else at most 2, as
// containerd's shims run. It removes start's GOMAXPROCS from the
// environment again, so that the processes the daemon starts (the runc
// shim) get containerd's.
func setRuntime() {
	debug.SetGCPercent(40)
	go func() {
		for range time.Tick(30 * time.Second) {
			debug.FreeOSMemory()
		}
	}()
	switch {
	case os.Getenv(procsEnv) != "":
		os.Unsetenv(procsEnv)
		os.Unsetenv("GOMAXPROCS") // read once, at the runtime's start
	case os.Getenv("GOMAXPROCS") == "":
		runtime.GOMAXPROCS(2)
	}
}

// procsEnv marks a GOMAXPROCS that DaemonEnv set, not containerd's.
const procsEnv = "FEATHER_OSV_SHIM_GOMAXPROCS"

// DaemonEnv returns the environment for the shim daemon that start runs:
// environ with GOMAXPROCS=1 unless environ sets GOMAXPROCS. The runtime
// reads GOMAXPROCS only when it starts, and starting with one P costs less
// than lowering the number later (an idle daemon: 1.25 MiB of anonymous
// memory with GOMAXPROCS=1 in its environment, 1.5 MiB with 2 Ps, 1.95 MiB
// after runtime.GOMAXPROCS(1) on this 2-core machine). The daemon's work is
// waiting — on QEMU, its console, QMP and ttrpc —, which one P serves.
func DaemonEnv(environ []string) []string {
	for _, kv := range environ {
		if strings.HasPrefix(kv, "GOMAXPROCS=") {
			return environ
		}
	}
	return append(slices.Clip(environ), "GOMAXPROCS=1", procsEnv+"=1")
}

// setLogger sends the logs to the FIFO "log" containerd reads in the
// bundle, which also becomes the shim's stderr.
func setLogger(ctx context.Context, debugLevel bool) error {
	_ = log.SetFormat(log.TextFormat)
	if debugLevel {
		_ = log.SetLevel(log.DebugLevel)
	}
	w, err := fifo.OpenFifoDup2(ctx, "log", unix.O_WRONLY, 0o700, int(os.Stderr.Fd()))
	if err != nil {
		return fmt.Errorf("open log fifo: %w", err)
	}
	log.G(ctx).Logger.SetOutput(w)
	return nil
}

// listener is the socket to serve: the one start handed over as fd 3, or
// path.
func listener(path string) (net.Listener, error) {
	if path == "" {
		return net.FileListener(os.NewFile(3, "socket"))
	}
	if len(path) > socketPathLimit {
		return nil, fmt.Errorf("%q: unix socket path too long (> %d)", path, socketPathLimit)
	}
	return net.Listen("unix", path)
}

func dumpStacks(logger *log.Entry) {
	buf := make([]byte, 16384)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	logger.Infof("=== BEGIN goroutine stack dump ===\n%s\n=== END goroutine stack dump ===", buf)
}

func writeProto(m proto.Message) error {
	b, err := proto.Marshal(m)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

var errDeprecatedBootstrapAPI = errors.New("shim was started through the deprecated API but was built against the new API; if you upgraded containerd, you may need to restart the daemon")

// parseBootstrapParams parses start's stdin; a legacy runtime options
// message can parse as BootstrapParams too, hence the identity check.
func parseBootstrapParams(input []byte, id, namespace string) (*bootapi.BootstrapParams, error) {
	if len(input) == 0 {
		return nil, errDeprecatedBootstrapAPI
	}
	params := &bootapi.BootstrapParams{}
	if err := proto.Unmarshal(input, params); err != nil {
		return nil, fmt.Errorf("%w: failed to unmarshal bootstrap parameters: %w", errDeprecatedBootstrapAPI, err)
	}
	if params.InstanceID != id || params.Namespace != namespace {
		return nil, fmt.Errorf("bootstrap parameters do not match command-line arguments: %w", errDeprecatedBootstrapAPI)
	}
	return params, nil
}
