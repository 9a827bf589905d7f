package pods

import (
	"os"
	"path/filepath"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

func TestEmptyDirOverLimit(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(filepath.Join(data, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	// 2 MiB of real blocks, and a hard link to it that du counts once.
	if err := os.WriteFile(filepath.Join(data, "sub", "f"), make([]byte, 2<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(data, "sub", "f"), filepath.Join(data, "g")); err != nil {
		t.Fatal(err)
	}
	if u := diskUsage(data); u < 2<<20 || u >= 3<<20 {
		t.Fatalf("diskUsage = %d, want about 2 MiB (a hard link counted once)", u)
	}
	vol := func(limit string, medium corev1.StorageMedium) corev1.Volume {
		ed := &corev1.EmptyDirVolumeSource{Medium: medium}
		if limit != "" {
			q := resource.MustParse(limit)
			ed.SizeLimit = &q
		}
		return corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: ed}}
	}
	for _, tc := range []struct {
		name string
		vol  corev1.Volume
		want string // "" for not over
	}{
		{"over its limit", vol("1Mi", ""), `Usage of EmptyDir volume "data" exceeds the limit "1Mi". `},
		{"within its limit", vol("3Mi", ""), ""},
		{"no limit", vol("", ""), ""},
		{"memory: the tmpfs enforces it", vol("1Mi", corev1.StorageMediumMemory), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{Volumes: []corev1.Volume{tc.vol}}}
			msg, over := emptyDirOverLimit(pod, map[string]string{"data": data})
			if over != (tc.want != "") || msg != tc.want {
				t.Errorf("got %q, %v; want %q", msg, over, tc.want)
			}
			if hasDiskSizeLimit(pod) != (tc.name == "over its limit" || tc.name == "within its limit") {
				t.Errorf("hasDiskSizeLimit = %v", hasDiskSizeLimit(pod))
			}
		})
	}
}
