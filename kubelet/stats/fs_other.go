//go:build !linux

package stats

import (
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	statsv1alpha1 "k8s.io/kubelet/pkg/apis/stats/v1alpha1"
)

func statFS(string) (fsInfo, error) {
	return fsInfo{}, fmt.Errorf("statfs: %w", errdefs.ErrNotImplemented)
}

func allocated(fi os.FileInfo) uint64 { return uint64(fi.Size()) }

func bootTime(string) time.Time { return time.Time{} }

func rlimit(_ string, now metav1.Time) *statsv1alpha1.RlimitStats {
	return &statsv1alpha1.RlimitStats{Time: now}
}
