package stats

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"

	"github.com/feather-edge/feather/shim-osv/qmp"
)

// GuestRuntime is a Runtime that can also tell a unikernel's guest's own
// view of its memory, beside what its VM costs the node (its cgroup). The
// collector finds it by type assertion.
type GuestRuntime interface {
	// Guest returns container id's guest memory. It blocks; ctx bounds
	// it. An error that is errdefs.IsNotImplemented says id is no VM (or
	// its VM has no stats monitor) and is not logged.
	Guest(ctx context.Context, id string) (GuestMemory, error)
}

// GuestMemory is what QEMU tells of a guest's memory.
type GuestMemory struct {
	// Bytes is the RAM the guest has, as QEMU's balloon reports it
	// (query-balloon "actual": the RAM less what a balloon driver handed
	// back). OSv v0.57 has no balloon driver, so it is all of the VM's
	// RAM.
	Bytes uint64
	// Touched is the guest RAM that is resident on the host: the pages of
	// QEMU's mapping of the guest's RAM that the guest has written or read
	// (0 when the mapping was not found). OSv does not hand freed memory
	// back, so it is the guest's high-water mark.
	Touched uint64
}

// The names of the guest's figures in a container's userDefinedMetrics.
const (
	MetricGuestMemory  = "guest_memory_bytes"
	MetricGuestTouched = "guest_memory_touched_bytes"
)

// userDefined turns g into stats/v1alpha1 user-defined metrics: gauges in
// bytes.
func (g GuestMemory) userDefined(t metav1.Time) []statsv1alpha1.UserDefinedMetric {
	out := []statsv1alpha1.UserDefinedMetric{{UserDefinedMetricDescriptor: statsv1alpha1.UserDefinedMetricDescriptor{
		Name: MetricGuestMemory, Type: statsv1alpha1.MetricGauge, Units: "bytes"}, Time: t, Value: float64(g.Bytes)}}
	if g.Touched > 0 {
		out = append(out, statsv1alpha1.UserDefinedMetric{UserDefinedMetricDescriptor: statsv1alpha1.UserDefinedMetricDescriptor{
			Name: MetricGuestTouched, Type: statsv1alpha1.MetricGauge, Units: "bytes"}, Time: t, Value: float64(g.Touched)})
	}
	return out
}

// queryGuest asks the QMP monitor at sock for the guest's RAM (its size,
// and the balloon's view of it) and reads the resident part of QEMU's
// mapping of it from smaps (a /proc/PID/smaps). It blocks until ctx is
// done when the monitor does not answer.
func queryGuest(ctx context.Context, sock string, smaps func() (io.ReadCloser, error)) (GuestMemory, error) {
	c, err := qmp.Dial(ctx, sock)
	if err != nil {
		return GuestMemory{}, err
	}
	defer c.Close()
	var size struct {
		Base uint64 `json:"base-memory"`
	}
	if err := execute(ctx, c, "query-memory-size-summary", &size); err != nil {
		return GuestMemory{}, err
	}
	g := GuestMemory{Bytes: size.Base}
	var balloon struct {
		Actual uint64 `json:"actual"`
	}
	switch err := execute(ctx, c, "query-balloon", &balloon); {
	case errdefs.IsFailedPrecondition(err):
		// No balloon device (a VM started before the shim had one): the
		// guest has all of its RAM.
	case err != nil:
		return GuestMemory{}, err
	default:
		g.Bytes = balloon.Actual
	}
	if size.Base > 0 {
		r, err := smaps()
		if err != nil {
			return GuestMemory{}, fmt.Errorf("smaps: %w", err)
		}
		defer r.Close()
		if g.Touched, err = residentOfSize(r, size.Base); err != nil {
			return GuestMemory{}, err
		}
	}
	return g, nil
}

func execute(ctx context.Context, c *qmp.Client, cmd string, v any) error {
	ret, err := c.Execute(ctx, cmd, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(ret, v); err != nil {
		return fmt.Errorf("qmp %s: %w", cmd, err)
	}
	return nil
}

// residentOfSize returns the resident bytes (Rss) of the mappings in an
// smaps file that are exactly size bytes long: QEMU maps a guest's RAM
// block as one mapping of its size (anonymous, or a file in /dev/shm when
// virtio-fs needs it shared), apart from any other.
func residentOfSize(r io.Reader, size uint64) (uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var in bool
	var rss uint64
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if lo, hi, ok := strings.Cut(f[0], "-"); ok && !strings.HasSuffix(f[0], ":") {
			a, err1 := strconv.ParseUint(lo, 16, 64)
			b, err2 := strconv.ParseUint(hi, 16, 64)
			in = err1 == nil && err2 == nil && b-a == size
			continue
		}
		if in && f[0] == "Rss:" && len(f) >= 2 {
			n, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("smaps: %q: %w", line, err)
			}
			rss += n << 10
		}
	}
	return rss, sc.Err()
}
