package pods

import (
	"context"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Eviction of a pod whose emptyDir outgrew its sizeLimit, as kubelet's
// eviction manager does it (localStorageEviction, emptyDirLimitEviction):
// every 10 s the disk usage of each emptyDir with a sizeLimit is measured
// (as du: the blocks its files take, each hard-linked file once); when one
// exceeds its limit the pod is evicted — an Evicted event, every container
// killed with a grace period of 1 s, phase Failed with reason Evicted and
// kubelet's message, and nothing run again. A memory emptyDir is not
// measured: its tmpfs is sized to the limit, so the kernel enforces it.

// Kubelet's eviction figures.
const (
	evictionPeriod = 10 * time.Second // kubelet's evictionMonitoringPeriod
	evictionGrace  = 1 * time.Second  // immediateEvictionGracePeriodSeconds
	reasonEvicted  = "Evicted"
)

// emptyDirOverLimit returns kubelet's eviction message for the first disk
// emptyDir of pod whose usage exceeds its sizeLimit; dirs are the volumes'
// host paths. ok is false when none does.
func emptyDirOverLimit(pod *corev1.Pod, dirs map[string]string) (msg string, ok bool) {
	for i := range pod.Spec.Volumes {
		v := &pod.Spec.Volumes[i]
		ed := v.EmptyDir
		if ed == nil || ed.Medium == corev1.StorageMediumMemory || ed.SizeLimit == nil || ed.SizeLimit.Sign() <= 0 {
			continue
		}
		dir, found := dirs[v.Name]
		if !found {
			continue
		}
		if used := diskUsage(dir); used > ed.SizeLimit.Value() {
			return fmt.Sprintf("Usage of EmptyDir volume %q exceeds the limit %q. ", v.Name, ed.SizeLimit.String()), true
		}
	}
	return "", false
}

// diskUsage is the bytes of disk the tree at dir takes, as du counts them;
// what cannot be read is left out.
func diskUsage(dir string) int64 {
	var total int64
	seen := map[fileID]bool{}
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		id, blocks, links := fileBlocks(fi)
		if links > 1 && !fi.IsDir() {
			if seen[id] {
				return nil
			}
			seen[id] = true
		}
		total += blocks
		return nil
	})
	return total
}

// checkEviction measures the pod's emptyDirs when due and evicts the pod if
// one is over its limit. It reports whether it evicted the pod and when to
// look again.
func (w *worker) checkEviction(ctx context.Context, pod *corev1.Pod, insts []instance) (evicted bool, next time.Duration) {
	if !hasDiskSizeLimit(pod) {
		return false, time.Hour
	}
	if wait := time.Until(w.evictCheckAt); wait > 0 {
		return false, wait
	}
	w.evictCheckAt = time.Now().Add(evictionPeriod)
	msg, over := emptyDirOverLimit(pod, w.mounts)
	if !over {
		return false, evictionPeriod
	}
	w.evict(ctx, pod, insts, msg)
	return true, time.Hour
}

// hasDiskSizeLimit reports whether pod has a disk emptyDir with a sizeLimit.
func hasDiskSizeLimit(pod *corev1.Pod) bool {
	for _, v := range pod.Spec.Volumes {
		if ed := v.EmptyDir; ed != nil && ed.Medium != corev1.StorageMediumMemory && ed.SizeLimit != nil && ed.SizeLimit.Sign() > 0 {
			return true
		}
	}
	return false
}

// evict kills every running container of pod (preStop hooks get the
// eviction's 1 s grace) and fails it with reason Evicted and msg, as
// kubelet's evictPod. It blocks until the kills are done: virtual-kubelet
// sends no status of a pod after it is Failed, so the containers' ends must
// be in that one.
func (w *worker) evict(ctx context.Context, pod *corev1.Pod, insts []instance, msg string) {
	w.log.WithField("message", msg).Info("evicting pod")
	w.p.events.Event(pod, corev1.EventTypeWarning, reasonEvicted, msg)
	w.stopProbes()
	var wg sync.WaitGroup
	for _, in := range insts {
		if !in.Running {
			continue
		}
		w.p.events.Event(pod, corev1.EventTypeNormal, "Killing", "Stopping container "+in.Name)
		wg.Go(func() { w.killContainer(ctx, pod, specContainer(pod, in.Name), in, evictionGrace) })
	}
	wg.Wait()
	w.failed = &waiting{Reason: reasonEvicted, Message: msg}
}
