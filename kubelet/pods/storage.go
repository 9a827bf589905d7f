package pods

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// storageInterval is how often a unikernel's disk is measured against its
// ephemeral-storage limit: kubelet's eviction manager's period.
const storageInterval = 10 * time.Second

// checkStorage evicts the pod, as kubelet's eviction manager does, when a
// running unikernel container's snapshot — its instance disk, on the
// feather snapshotter — has grown past the container's
// resources.limits.ephemeral-storage: phase Failed, reason Evicted, a
// Warning event, every container killed. It returns when to measure again,
// 0 when no running unikernel has a limit. A usage it cannot read is
// logged and measured again later.
func (w *worker) checkStorage(ctx context.Context, pod *corev1.Pod, insts []instance) time.Duration {
	p := w.p
	var next time.Duration
	for _, in := range insts {
		if !in.Running || in.Runtime == p.cfg.Runtimes["runc"] {
			continue
		}
		c := specContainer(pod, in.Name)
		if c == nil {
			continue
		}
		limit, ok := c.Resources.Limits[corev1.ResourceEphemeralStorage]
		if !ok {
			continue
		}
		next = storageInterval
		used, err := p.snapshotUsage(ctx, in.ID)
		if err != nil {
			w.log.WithError(err).WithField("container", in.ID).Info("ephemeral storage: usage not read")
			continue
		}
		if used <= limit.Value() {
			continue
		}
		msg := fmt.Sprintf("Container %s exceeded its local ephemeral storage limit %q. ", c.Name, limit.String())
		w.log.WithField("container", in.ID).WithField("used", used).WithField("limit", limit.Value()).Info("evicting the pod: a unikernel's disk is over its ephemeral-storage limit")
		p.events.Event(pod, corev1.EventTypeWarning, "Evicted", msg)
		w.failPod(ctx, pod, insts, "Evicted", msg)
		return next
	}
	return next
}

// snapshotUsage returns the bytes of container id's snapshot.
func (p *Provider) snapshotUsage(ctx context.Context, id string) (int64, error) {
	c, err := p.cd.LoadContainer(ctx, id)
	if err != nil {
		return 0, err
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.Snapshotter == "" || info.SnapshotKey == "" {
		return 0, fmt.Errorf("container %s has no snapshot", id)
	}
	u, err := p.cd.SnapshotService(info.Snapshotter).Usage(ctx, info.SnapshotKey)
	if err != nil {
		return 0, fmt.Errorf("usage of snapshot %s: %w", info.SnapshotKey, err)
	}
	return u.Size, nil
}
