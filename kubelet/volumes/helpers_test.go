package volumes

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/feather-edge/feather/internal/prereq"
)

// requiresRoot skips tests that mount tmpfs.
func requiresRoot(t *testing.T) {
	t.Helper()
	prereq.Check(t, os.Geteuid() == 0, "needs root to mount tmpfs and change file groups")
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fixture is a Manager over a temp dir, a fake API server and a clock the test moves.
type fixture struct {
	m        *Manager
	cs       *fake.Clientset
	now      time.Time
	requests []*authenticationv1.TokenRequest // token requests the API server received
	sa       []string                         // their service accounts
	tokenErr error                            // when set, token requests fail with it
}

func newFixture(t *testing.T, objs ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{cs: fake.NewClientset(objs...), now: t0}
	f.cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca, ok := a.(k8stesting.CreateActionImpl)
		if !ok || ca.GetSubresource() != "token" {
			return false, nil, nil
		}
		if f.tokenErr != nil {
			return true, nil, f.tokenErr
		}
		req := ca.GetObject().(*authenticationv1.TokenRequest)
		f.requests = append(f.requests, req.DeepCopy())
		f.sa = append(f.sa, ca.Name)
		resp := req.DeepCopy()
		resp.Status.Token = fmt.Sprintf("token-%d", len(f.requests))
		resp.Status.ExpirationTimestamp = metav1.NewTime(f.now.Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))
		return true, resp, nil
	})
	f.m = &Manager{
		Root:     t.TempDir(),
		Source:   NewClientSource(f.cs),
		NodeName: "node-1",
		Now:      func() time.Time { return f.now },
	}
	return f
}

// setup runs Setup and tears the pod down when the test ends, even when it fails, so that no tmpfs is left.
func (f *fixture) setup(t *testing.T, pod *corev1.Pod) (map[string]string, error) {
	t.Helper()
	t.Cleanup(func() {
		if err := f.m.Teardown(context.Background(), pod.UID); err != nil {
			t.Errorf("teardown: %v", err)
		}
	})
	return f.m.Setup(context.Background(), pod)
}

func newPod(uid string, vols ...corev1.Volume) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: types.UID(uid)},
		Spec: corev1.PodSpec{
			Volumes:    vols,
			Containers: []corev1.Container{{Name: "app", Image: "busybox"}},
		},
	}
}

func configMap(name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: data}
}

func secret(name string, data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}, Data: map[string][]byte{}}
	for k, v := range data {
		s.Data[k] = []byte(v)
	}
	return s
}

func ptr[T any](v T) *T { return &v }

// readVolume returns the files of an atomic-writer volume as path → "mode content", read through the
// user-visible names, and checks that each top-level name is a symlink into ..data.
func readVolume(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read volume: %v", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") {
			continue
		}
		link, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil || link != filepath.Join(dataLink, e.Name()) {
			t.Errorf("%s: want a symlink to %s/%s, got %q (%v)", e.Name(), dataLink, e.Name(), link, err)
		}
		// Walk through the symlink, as a container would see the file.
		root := filepath.Join(dir, e.Name())
		err = filepath.WalkDir(root+"/", func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			fi, err := os.Stat(p)
			if err != nil {
				return err
			}
			if fi.IsDir() {
				return nil
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(dir, filepath.Clean(p))
			out[rel] = fmt.Sprintf("%04o %s", fi.Mode().Perm(), data)
			return nil
		})
		if err != nil {
			// A single file: WalkDir of "file/" fails; read it directly.
			fi, serr := os.Stat(root)
			if serr != nil || fi.IsDir() {
				t.Fatalf("read %s: %v", root, err)
			}
			data, rerr := os.ReadFile(root)
			if rerr != nil {
				t.Fatalf("read %s: %v", root, rerr)
			}
			out[e.Name()] = fmt.Sprintf("%04o %s", fi.Mode().Perm(), data)
		}
	}
	return out
}

// versions lists the version directories of an atomic-writer volume.
func versions(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read volume: %v", err)
	}
	var out []string
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "..") && e.Name() != dataLink {
			out = append(out, e.Name())
		}
	}
	sort.Strings(out)
	return out
}

// mountAt returns the mount on exactly dir, or nil.
func mountAt(t *testing.T, dir string) *mountinfo.Info {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatalf("resolve %s: %v", dir, err)
	}
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(real))
	if err != nil {
		t.Fatalf("mountinfo: %v", err)
	}
	if len(ms) == 0 {
		return nil
	}
	return ms[len(ms)-1]
}

// mountsUnder counts the mounts at or below dir.
func mountsUnder(t *testing.T, dir string) int {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		t.Fatalf("mountinfo: %v", err)
	}
	return len(ms)
}

func equalMaps(t *testing.T, what string, got, want map[string]string) {
	t.Helper()
	keys := map[string]bool{}
	for k := range got {
		keys[k] = true
	}
	for k := range want {
		keys[k] = true
	}
	sorted := make([]string, 0, len(keys))
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		g, gok := got[k]
		w, wok := want[k]
		switch {
		case !gok:
			t.Errorf("%s: %s missing, want %q", what, k, w)
		case !wok:
			t.Errorf("%s: %s = %q, want no such file", what, k, g)
		case g != w:
			t.Errorf("%s: %s = %q, want %q", what, k, g, w)
		}
	}
}
