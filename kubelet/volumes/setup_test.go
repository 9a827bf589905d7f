package volumes

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/feather-edge/feather/internal/prereq"
)

func cmVolume(name string, src corev1.ConfigMapVolumeSource) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{ConfigMap: &src}}
}

func TestSetupConfigMap(t *testing.T) {
	app := configMap("app", map[string]string{"app.conf": "port=80", "log.conf": "level=info"})
	app.BinaryData = map[string][]byte{"logo.bin": {0, 1, 2, 0xff}}
	ref := corev1.LocalObjectReference{Name: "app"}
	missing := corev1.LocalObjectReference{Name: "nope"}

	for _, tc := range []struct {
		name  string
		src   corev1.ConfigMapVolumeSource
		want  map[string]string
		isErr func(error) bool // nil: success
		msg   string           // in the error
	}{
		{
			name: "all keys with default mode",
			src:  corev1.ConfigMapVolumeSource{LocalObjectReference: ref},
			want: map[string]string{"app.conf": "0644 port=80", "log.conf": "0644 level=info", "logo.bin": "0644 \x00\x01\x02\xff"},
		},
		{
			name: "defaultMode",
			src:  corev1.ConfigMapVolumeSource{LocalObjectReference: ref, DefaultMode: ptr(int32(0o400))},
			want: map[string]string{"app.conf": "0400 port=80", "log.conf": "0400 level=info", "logo.bin": "0400 \x00\x01\x02\xff"},
		},
		{
			name: "items with nested paths and a mode",
			src: corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Items: []corev1.KeyToPath{
				{Key: "app.conf", Path: "etc/app/app.conf"},
				{Key: "logo.bin", Path: "logo", Mode: ptr(int32(0o600))},
			}},
			want: map[string]string{"etc/app/app.conf": "0644 port=80", "logo": "0600 \x00\x01\x02\xff"},
		},
		{
			name: "optional and missing",
			src:  corev1.ConfigMapVolumeSource{LocalObjectReference: missing, Optional: ptr(true)},
			want: map[string]string{},
		},
		{
			name: "optional with a missing key",
			src: corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Optional: ptr(true), Items: []corev1.KeyToPath{
				{Key: "app.conf", Path: "a"}, {Key: "absent", Path: "b"},
			}},
			want: map[string]string{"a": "0644 port=80"},
		},
		{
			name:  "missing and not optional",
			src:   corev1.ConfigMapVolumeSource{LocalObjectReference: missing},
			isErr: func(err error) bool { return apierrors.IsNotFound(err) && errdefs.IsNotFound(err) },
			msg:   `volume "cfg": configMap "nope" not found in namespace "default" (create it, or mark the volume optional)`,
		},
		{
			name:  "missing key",
			src:   corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Items: []corev1.KeyToPath{{Key: "absent", Path: "b"}}},
			isErr: errdefs.IsNotFound,
			msg:   `configMap "app" has no key "absent"`,
		},
		{
			name:  "path escaping the volume",
			src:   corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "../../x"}}},
			isErr: errdefs.IsInvalidArgument,
			msg:   `invalid path "../../x": must not contain '..'`,
		},
		{
			name:  "absolute path",
			src:   corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Items: []corev1.KeyToPath{{Key: "app.conf", Path: "/etc/passwd"}}},
			isErr: errdefs.IsInvalidArgument,
			msg:   "must be relative",
		},
		{
			name:  "mode out of range",
			src:   corev1.ConfigMapVolumeSource{LocalObjectReference: ref, DefaultMode: ptr(int32(0o4755))},
			isErr: errdefs.IsInvalidArgument,
			msg:   "defaultMode",
		},
		{
			name: "two items on one path",
			src: corev1.ConfigMapVolumeSource{LocalObjectReference: ref, Items: []corev1.KeyToPath{
				{Key: "app.conf", Path: "x"}, {Key: "log.conf", Path: "x"},
			}},
			isErr: errdefs.IsInvalidArgument,
			msg:   "written twice",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, app)
			pod := newPod("uid-cm", cmVolume("cfg", tc.src))
			dirs, err := f.setup(t, pod)
			dir := filepath.Join(f.m.Root, "uid-cm", "volumes", "cfg")
			if tc.isErr != nil {
				if err == nil || !tc.isErr(err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Setup error %v; want one containing %q of the right kind", err, tc.msg)
				}
				if _, ok := dirs["cfg"]; ok {
					t.Errorf("failed volume is in the result: %v", dirs)
				}
				if _, err := os.Lstat(dir); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("failed volume left %s behind (%v)", dir, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Setup: %v", err)
			}
			if dirs["cfg"] != dir {
				t.Fatalf("dirs = %v, want cfg → %s", dirs, dir)
			}
			equalMaps(t, "volume", readVolume(t, dir), tc.want)
			if mountAt(t, dir) != nil {
				t.Errorf("a configMap volume is mounted; want a plain directory")
			}
		})
	}
}

func TestSetupSecretOnTmpfs(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t, secret("db", map[string]string{"password": "hunter2", "user": "app"}))
	pod := newPod("uid-secret", corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{
		SecretName: "db", DefaultMode: ptr(int32(0o400)),
		Items: []corev1.KeyToPath{{Key: "password", Path: "pw"}, {Key: "user", Path: "u", Mode: ptr(int32(0o444))}},
	}}})
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	mi := mountAt(t, dirs["creds"])
	if mi == nil || mi.FSType != "tmpfs" {
		t.Fatalf("secret volume mount %+v, want a tmpfs", mi)
	}
	if !strings.Contains(mi.Options, "nosuid") || !strings.Contains(mi.Options, "nodev") {
		t.Errorf("tmpfs options %q, want nosuid,nodev", mi.Options)
	}
	equalMaps(t, "secret", readVolume(t, dirs["creds"]), map[string]string{"pw": "0400 hunter2", "u": "0444 app"})

	// Setup again (agent restart): no second tmpfs on top.
	if _, err := f.m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if n := mountsUnder(t, dirs["creds"]); n != 1 {
		t.Fatalf("%d mounts on the secret volume after a second Setup, want 1", n)
	}
}

func TestSetupSecretMissing(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t)
	pod := newPod("uid-nosecret", corev1.Volume{Name: "creds", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "db"}}})
	_, err := f.setup(t, pod)
	if !apierrors.IsNotFound(err) || !strings.Contains(err.Error(), `volume "creds": secret "db" not found`) {
		t.Fatalf("Setup: %v, want secret not found", err)
	}
	podDir := filepath.Join(f.m.Root, "uid-nosecret")
	if n := mountsUnder(t, podDir); n != 0 {
		t.Fatalf("%d mounts left after a failed secret volume", n)
	}
	if _, err := os.Lstat(filepath.Join(podDir, "volumes", "creds")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("failed secret volume left behind: %v", err)
	}
}

func TestSetupDownwardAPI(t *testing.T) {
	f := newFixture(t)
	f.m.NodeAllocatable = corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("4"),
		corev1.ResourceMemory: resource.MustParse("8Gi"),
	}
	item := func(p, field string) corev1.DownwardAPIVolumeFile {
		return corev1.DownwardAPIVolumeFile{Path: p, FieldRef: &corev1.ObjectFieldSelector{FieldPath: field}}
	}
	res := func(p, container, r, divisor string) corev1.DownwardAPIVolumeFile {
		sel := &corev1.ResourceFieldSelector{ContainerName: container, Resource: r}
		if divisor != "" {
			sel.Divisor = resource.MustParse(divisor)
		}
		return corev1.DownwardAPIVolumeFile{Path: p, ResourceFieldRef: sel}
	}
	pod := newPod("uid-downward", corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
		Items: []corev1.DownwardAPIVolumeFile{
			item("name", "metadata.name"),
			item("namespace", "metadata.namespace"),
			item("uid", "metadata.uid"),
			item("labels", "metadata.labels"),
			item("annotations", "metadata.annotations"),
			item("app", "metadata.labels['app']"),
			item("node", "spec.nodeName"),
			item("sa", "spec.serviceAccountName"),
			item("ip", "status.podIP"),
			{Path: "mode", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}, Mode: ptr(int32(0o600))},
			res("cpu_limit", "app", "limits.cpu", ""),
			res("cpu_limit_m", "app", "limits.cpu", "1m"),
			res("mem_limit_mi", "app", "limits.memory", "1Mi"),
			res("cpu_request_m", "app", "requests.cpu", "1m"),
			res("sidecar_cpu_limit_m", "sidecar", "limits.cpu", "1m"),
			res("sidecar_mem_limit", "sidecar", "limits.memory", ""),
			res("sidecar_mem_request", "sidecar", "requests.memory", ""),
		},
	}}})
	pod.Labels = map[string]string{"app": "web", "tier": "front"}
	pod.Annotations = map[string]string{"note": `say "hi"`, "a": "1"}
	pod.Spec.ServiceAccountName = "runner"
	pod.Spec.Containers = []corev1.Container{
		{Name: "app", Resources: corev1.ResourceRequirements{
			Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1500m"), corev1.ResourceMemory: resource.MustParse("100Mi")},
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("250m")},
		}},
		{Name: "sidecar"},
	}
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	equalMaps(t, "downwardAPI", readVolume(t, dirs["info"]), map[string]string{
		"name":                "0644 web",
		"namespace":           "0644 default",
		"uid":                 "0644 uid-downward",
		"labels":              "0644 app=\"web\"\ntier=\"front\"",
		"annotations":         "0644 a=\"1\"\nnote=\"say \\\"hi\\\"\"",
		"app":                 "0644 web",
		"node":                "0644 node-1", // the pod has no spec.nodeName yet: the Manager's
		"sa":                  "0644 runner",
		"ip":                  "0644 ",
		"mode":                "0600 web",
		"cpu_limit":           "0644 2", // 1.5 cores rounded up
		"cpu_limit_m":         "0644 1500",
		"mem_limit_mi":        "0644 100",
		"cpu_request_m":       "0644 250",
		"sidecar_cpu_limit_m": "0644 4000",       // no limit: node allocatable
		"sidecar_mem_limit":   "0644 8589934592", // no limit: node allocatable
		"sidecar_mem_request": "0644 0",
	})
}

func TestSetupDownwardAPIErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		item corev1.DownwardAPIVolumeFile
		msg  string
	}{
		{
			name: "unknown field",
			item: corev1.DownwardAPIVolumeFile{Path: "x", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "spec.hostname"}},
			msg:  `downwardAPI item "x": fieldRef "spec.hostname" is not supported`,
		},
		{
			name: "unknown container",
			item: corev1.DownwardAPIVolumeFile{Path: "x", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "ghost", Resource: "limits.cpu"}},
			msg:  `pod has no container "ghost"`,
		},
		{
			name: "limit without a limit or allocatable",
			item: corev1.DownwardAPIVolumeFile{Path: "x", ResourceFieldRef: &corev1.ResourceFieldSelector{ContainerName: "app", Resource: "limits.memory"}},
			msg:  "node's allocatable memory is unknown",
		},
		{
			name: "neither ref",
			item: corev1.DownwardAPIVolumeFile{Path: "x"},
			msg:  "set exactly one of fieldRef and resourceFieldRef",
		},
		{
			name: "bad path",
			item: corev1.DownwardAPIVolumeFile{Path: "a/../../x", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}},
			msg:  "must not contain '..'",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			pod := newPod("uid-dw-err", corev1.Volume{Name: "info", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{
				Items: []corev1.DownwardAPIVolumeFile{tc.item},
			}}})
			_, err := f.setup(t, pod)
			if err == nil || !strings.Contains(err.Error(), tc.msg) || !strings.HasPrefix(err.Error(), `volume "info": `) {
				t.Fatalf("Setup: %v; want an error naming the volume and %q", err, tc.msg)
			}
			if !errdefs.IsInvalidArgument(err) && !errdefs.IsFailedPrecondition(err) {
				t.Errorf("error %v wraps no errdefs sentinel", err)
			}
		})
	}
}

func TestSetupEmptyDirDisk(t *testing.T) {
	f := newFixture(t)
	pod := newPod("uid-empty",
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{SizeLimit: ptr(resource.MustParse("1Gi"))}}},
		corev1.Volume{Name: "private", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Mode: ptr(int32(0o1770))}}},
	)
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"scratch": os.ModeDir | 0o777, "private": os.ModeDir | os.ModeSticky | 0o770} {
		fi, err := os.Stat(dirs[name])
		if err != nil || fi.Mode() != want {
			t.Errorf("%s: mode %v (%v), want %v", name, fi.Mode(), err, want)
		}
		if mountAt(t, dirs[name]) != nil {
			t.Errorf("%s: disk emptyDir is a mount point", name)
		}
	}

	// What a container wrote survives a second Setup, and so does its chmod.
	if err := os.WriteFile(filepath.Join(dirs["scratch"], "state"), []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dirs["scratch"], 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dirs["scratch"], "state")); err != nil || string(b) != "keep" {
		t.Fatalf("emptyDir contents after second Setup: %q %v", b, err)
	}
	if fi, _ := os.Stat(dirs["scratch"]); fi.Mode().Perm() != 0o700 {
		t.Fatalf("emptyDir mode reset to %v by a second Setup", fi.Mode())
	}
}

func TestSetupEmptyDirMemory(t *testing.T) {
	requiresRoot(t)
	mi := func(s string) *resource.Quantity { return ptr(resource.MustParse(s)) }
	for _, tc := range []struct {
		name        string
		sizeLimit   *resource.Quantity
		limits      []string // memory limits of the containers; "" for none
		allocatable string
		wantSize    string // the size option in mountinfo; "" for none
	}{
		{name: "sizeLimit alone", sizeLimit: mi("64Mi"), limits: []string{""}, wantSize: "size=65536k"},
		{name: "pod limit below sizeLimit", sizeLimit: mi("64Mi"), limits: []string{"16Mi", "16Mi"}, wantSize: "size=32768k"},
		{name: "sizeLimit below pod limit", sizeLimit: mi("8Mi"), limits: []string{"32Mi"}, wantSize: "size=8192k"},
		{name: "no sizeLimit: node allocatable", limits: []string{""}, allocatable: "128Mi", wantSize: "size=131072k"},
		{name: "nothing known: kernel default", limits: []string{""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.allocatable != "" {
				f.m.NodeAllocatable = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(tc.allocatable)}
			}
			pod := newPod("uid-mem", corev1.Volume{Name: "shm", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{
				Medium: corev1.StorageMediumMemory, SizeLimit: tc.sizeLimit,
			}}})
			pod.Spec.Containers = nil
			for i, l := range tc.limits {
				c := corev1.Container{Name: string(rune('a' + i))}
				if l != "" {
					c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(l)}
				}
				pod.Spec.Containers = append(pod.Spec.Containers, c)
			}
			dirs, err := f.setup(t, pod)
			if err != nil {
				t.Fatal(err)
			}
			m := mountAt(t, dirs["shm"])
			if m == nil || m.FSType != "tmpfs" {
				t.Fatalf("mount %+v, want tmpfs", m)
			}
			var size string
			for _, o := range strings.Split(m.VFSOptions, ",") {
				if strings.HasPrefix(o, "size=") {
					size = o
				}
			}
			if tc.wantSize != "" && size != tc.wantSize {
				t.Errorf("tmpfs options %q, want %s", m.VFSOptions, tc.wantSize)
			}
			if fi, err := os.Stat(dirs["shm"]); err != nil || fi.Mode().Perm() != 0o777 {
				t.Errorf("tmpfs root mode %v (%v), want 0777", fi.Mode(), err)
			}
		})
	}
}

func TestSetupEmptyDirFSGroup(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t)
	pod := newPod("uid-fsgroup", corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{FSGroup: ptr(int64(2000))}
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(dirs["data"])
	if err != nil {
		t.Fatal(err)
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != 2000 || fi.Mode() != os.ModeDir|os.ModeSetgid|0o777 {
		t.Fatalf("emptyDir gid %d mode %v, want 2000 and setgid 0777", gid, fi.Mode())
	}
}

func TestSetupHostPath(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "dir")
	regular := filepath.Join(base, "file")
	sock := filepath.Join(base, "sock")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(regular, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	block := findBlockDevice()

	for _, tc := range []struct {
		name  string
		path  string
		typ   corev1.HostPathType
		isErr func(error) bool // nil: success
		msg   string
		check func(t *testing.T, p string)
	}{
		{name: "unset type, a file", path: regular},
		{name: "unset type, missing: a directory is made", path: filepath.Join(base, "absent/sub"), check: func(t *testing.T, p string) {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() {
				t.Errorf("created %v %v, want a directory", fi, err)
			}
		}},
		{name: "directory", path: dir, typ: corev1.HostPathDirectory},
		{name: "directory that is a file", path: regular, typ: corev1.HostPathDirectory, isErr: errdefs.IsFailedPrecondition, msg: "is not a directory (it is a regular file)"},
		{name: "directory missing", path: filepath.Join(base, "missing"), typ: corev1.HostPathDirectory, isErr: errdefs.IsNotFound, msg: "does not exist"},
		{name: "directory or create, creates", path: filepath.Join(base, "new/sub"), typ: corev1.HostPathDirectoryOrCreate, check: func(t *testing.T, p string) {
			if fi, err := os.Stat(p); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o755 {
				t.Errorf("created %v %v, want a 0755 directory", fi, err)
			}
		}},
		{name: "directory or create, existing keeps its mode", path: dir, typ: corev1.HostPathDirectoryOrCreate, check: func(t *testing.T, p string) {
			if fi, _ := os.Stat(p); fi.Mode().Perm() != 0o700 {
				t.Errorf("mode changed to %v", fi.Mode())
			}
		}},
		{name: "directory or create on a file", path: regular, typ: corev1.HostPathDirectoryOrCreate, isErr: errdefs.IsFailedPrecondition, msg: "not a directory"},
		{name: "file", path: regular, typ: corev1.HostPathFile},
		{name: "file that is a directory", path: dir, typ: corev1.HostPathFile, isErr: errdefs.IsFailedPrecondition, msg: "is not a regular file (it is a directory)"},
		{name: "file or create, creates", path: filepath.Join(base, "newfile"), typ: corev1.HostPathFileOrCreate, check: func(t *testing.T, p string) {
			if fi, err := os.Stat(p); err != nil || !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o644 || fi.Size() != 0 {
				t.Errorf("created %v %v, want an empty 0644 file", fi, err)
			}
		}},
		{name: "file or create, existing untouched", path: regular, typ: corev1.HostPathFileOrCreate, check: func(t *testing.T, p string) {
			if b, _ := os.ReadFile(p); string(b) != "x" {
				t.Errorf("content %q, want x", b)
			}
		}},
		{name: "file or create without parent", path: filepath.Join(base, "nodir/f"), typ: corev1.HostPathFileOrCreate, isErr: errdefs.IsNotFound, msg: "parent directory does not exist"},
		{name: "socket", path: sock, typ: corev1.HostPathSocket},
		{name: "socket that is a file", path: regular, typ: corev1.HostPathSocket, isErr: errdefs.IsFailedPrecondition, msg: "is not a socket"},
		{name: "char device", path: "/dev/null", typ: corev1.HostPathCharDev},
		{name: "char device that is a socket", path: sock, typ: corev1.HostPathCharDev, isErr: errdefs.IsFailedPrecondition, msg: "is not a character device (it is a socket)"},
		{name: "block device", path: block, typ: corev1.HostPathBlockDev},
		{name: "block device that is a char device", path: "/dev/null", typ: corev1.HostPathBlockDev, isErr: errdefs.IsFailedPrecondition, msg: "is not a block device"},
		{name: "relative", path: "var/log", isErr: errdefs.IsInvalidArgument, msg: "must be absolute"},
		{name: "unknown type", path: dir, typ: "Fifo", isErr: errdefs.IsInvalidArgument, msg: `type "Fifo" is unknown`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			prereq.Check(t, tc.path != "", "no block device on this machine")
			f := newFixture(t)
			hp := &corev1.HostPathVolumeSource{Path: tc.path}
			if tc.typ != "" {
				hp.Type = ptr(tc.typ)
			}
			pod := newPod("uid-host", corev1.Volume{Name: "host", VolumeSource: corev1.VolumeSource{HostPath: hp}})
			dirs, err := f.setup(t, pod)
			if tc.isErr != nil {
				if err == nil || !tc.isErr(err) || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("Setup: %v; want an error of the right kind containing %q", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if dirs["host"] != filepath.Clean(tc.path) {
				t.Fatalf("dirs = %v, want host → %s", dirs, tc.path)
			}
			if tc.check != nil {
				tc.check(t, dirs["host"])
			}
			// Nothing for a hostPath under Root.
			if _, err := os.Lstat(filepath.Join(f.m.Root, "uid-host", "volumes", "host")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("hostPath volume made a directory under Root: %v", err)
			}
		})
	}
}

// findBlockDevice returns a block device node in /dev, or "".
func findBlockDevice() string {
	entries, _ := os.ReadDir("/dev")
	for _, e := range entries {
		if e.Type() == os.ModeDevice {
			return filepath.Join("/dev", e.Name())
		}
	}
	return ""
}

func TestSetupUnsupportedAndBadVolumes(t *testing.T) {
	for _, tc := range []struct {
		name  string
		vol   corev1.Volume
		isErr func(error) bool
		msg   string
	}{
		{
			name:  "persistentVolumeClaim",
			vol:   corev1.Volume{Name: "data", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
			isErr: errdefs.IsNotImplemented,
			msg:   `volume "data": persistentVolumeClaim volumes are not supported by Feather`,
		},
		{
			name:  "hugepages emptyDir",
			vol:   corev1.Volume{Name: "hp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{Medium: corev1.StorageMediumHugePages}}},
			isErr: errdefs.IsNotImplemented,
			msg:   `emptyDir medium "HugePages" is not supported`,
		},
		{
			name:  "volume name that is a path",
			vol:   corev1.Volume{Name: "../../etc", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
			isErr: errdefs.IsInvalidArgument,
			msg:   "cannot name a directory",
		},
		{
			name:  "no source at all",
			vol:   corev1.Volume{Name: "nothing"},
			isErr: errdefs.IsNotImplemented,
			msg:   "empty volumes are not supported",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			_, err := f.setup(t, newPod("uid-bad", tc.vol))
			if err == nil || !tc.isErr(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Setup: %v; want an error of the right kind containing %q", err, tc.msg)
			}
		})
	}
}

func TestSetupReportsEachFailedVolume(t *testing.T) {
	f := newFixture(t, configMap("app", map[string]string{"k": "v"}))
	pod := newPod("uid-partial",
		cmVolume("good", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}),
		cmVolume("gone", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "nope"}}),
		corev1.Volume{Name: "tmp", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		corev1.Volume{Name: "pvc", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "c"}}},
	)
	dirs, err := f.setup(t, pod)
	if err == nil {
		t.Fatal("Setup succeeded with two bad volumes")
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], `volume "gone": `) || !strings.HasPrefix(lines[1], `volume "pvc": `) {
		t.Fatalf("error lines %q, want one per failed volume, in order", lines)
	}
	if !apierrors.IsNotFound(err) || !errdefs.IsNotImplemented(err) {
		t.Errorf("joined error %v does not wrap both causes", err)
	}
	if len(dirs) != 2 || dirs["good"] == "" || dirs["tmp"] == "" {
		t.Fatalf("dirs = %v, want good and tmp", dirs)
	}
}

func TestSetupIdempotent(t *testing.T) {
	f := newFixture(t, configMap("app", map[string]string{"k": "v"}))
	pod := newPod("uid-again", cmVolume("cfg", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}))
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	before := versions(t, dirs["cfg"])
	dirs2, err := f.m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if dirs2["cfg"] != dirs["cfg"] {
		t.Fatalf("second Setup gave %v, first %v", dirs2, dirs)
	}
	if after := versions(t, dirs["cfg"]); len(after) != 1 || after[0] != before[0] {
		t.Fatalf("unchanged content rewritten: versions %q then %q", before, after)
	}

	// Changed content: a second Setup rewrites it. The configMap then goes away: the volume keeps what it had.
	cm := configMap("app", map[string]string{"k": "v2"})
	if _, err := f.cs.CoreV1().ConfigMaps("default").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	equalMaps(t, "updated", readVolume(t, dirs["cfg"]), map[string]string{"k": "0644 v2"})
	if err := f.cs.CoreV1().ConfigMaps("default").Delete(context.Background(), "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.m.Setup(context.Background(), pod); !apierrors.IsNotFound(err) {
		t.Fatalf("Setup after delete: %v, want not found", err)
	}
	equalMaps(t, "kept", readVolume(t, dirs["cfg"]), map[string]string{"k": "0644 v2"})
}

func TestConcurrentPods(t *testing.T) {
	f := newFixture(t, configMap("app", map[string]string{"k": "v"}))
	const n = 8
	errs := make(chan error, 2*n)
	pods := make([]*corev1.Pod, n)
	for i := range pods {
		pods[i] = newPod("uid-conc-"+string(rune('a'+i)),
			cmVolume("cfg", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}),
			corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		)
		t.Cleanup(func() { _ = f.m.Teardown(context.Background(), pods[i].UID) })
	}
	for _, pod := range pods {
		go func() {
			_, err := f.m.Setup(context.Background(), pod)
			errs <- err
		}()
		go func() { // Refresh racing with Setup on the same pod: serialised, never a half-written volume.
			_, err := f.m.Refresh(context.Background(), pod)
			errs <- err
		}()
	}
	for range 2 * n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for _, pod := range pods {
		dir := filepath.Join(f.m.Root, string(pod.UID), "volumes", "cfg")
		equalMaps(t, string(pod.UID), readVolume(t, dir), map[string]string{"k": "0644 v"})
	}
}
