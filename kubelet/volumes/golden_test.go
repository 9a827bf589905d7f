package volumes

import (
	"bytes"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestGoldenPod sets up testdata/pod.yaml, a pod with every supported kind of volume, and compares the volume
// trees and the container's OCI mounts with testdata/pod.golden.
func TestGoldenPod(t *testing.T) {
	requiresRoot(t)
	host := t.TempDir()
	raw, err := os.ReadFile("testdata/pod.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var pod corev1.Pod
	if err := yaml.UnmarshalStrict(bytes.ReplaceAll(raw, []byte("HOSTDIR"), []byte(host)), &pod); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t,
		configMap("shop-config", map[string]string{"nginx.conf": "worker_processes 1;", "app.yaml": "port: 8080", "unused": "x"}),
		secret("shop-db", map[string]string{"user": "shop", "password": "s3cret"}),
		configMap("kube-root-ca.crt", map[string]string{"ca.crt": "-----BEGIN CERTIFICATE-----"}),
	)
	dirs, err := f.setup(t, &pod)
	if err != nil {
		t.Fatal(err)
	}
	mounts, err := Mounts(&pod, &pod.Spec.Containers[0], dirs)
	if err != nil {
		t.Fatal(err)
	}

	got := dumpPod(t, &pod, dirs, mounts, strings.NewReplacer(f.m.Root, "ROOT", host, "HOST"))
	const golden = "testdata/pod.golden"
	if *update {
		if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestGoldenPod -update to write it)", err)
	}
	if got != string(want) {
		t.Fatalf("volumes differ from %s (go test -run TestGoldenPod -update rewrites it)\n--- got\n%s--- want\n%s", golden, got, want)
	}
}

var versionName = regexp.MustCompile(`\.\.\d{4}_\d\d_\d\d_\d\d_\d\d_\d\d\.\d+`)

// dumpPod writes what a person would check: each volume's file system, mode and group, its files with their
// modes, groups and contents, then the mounts, with temporary paths replaced.
func dumpPod(t *testing.T, pod *corev1.Pod, dirs map[string]string, mounts []specs.Mount, paths *strings.Replacer) string {
	t.Helper()
	var b strings.Builder
	for _, v := range pod.Spec.Volumes {
		dir := dirs[v.Name]
		fi, err := os.Stat(dir)
		if err != nil {
			t.Fatal(err)
		}
		fsKind := "disk"
		if m := mountAt(t, dir); m != nil && m.Mountpoint == dir {
			fsKind = m.FSType
			for _, o := range strings.Split(m.VFSOptions, ",") {
				if strings.HasPrefix(o, "size=") {
					fsKind += " " + o
				}
			}
		}
		fmt.Fprintf(&b, "volume %s: %s %s %v gid=%d\n", v.Name, paths.Replace(dir), fsKind, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid)
		if !isAtomic(&v) {
			continue
		}
		var lines []string
		err = filepath.WalkDir(filepath.Join(dir, dataLink)+"/", func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join(dir, dataLink), p)
			lines = append(lines, fmt.Sprintf("  %s %v gid=%d %q", rel, fi.Mode(), fi.Sys().(*syscall.Stat_t).Gid, data))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		sort.Strings(lines)
		for _, l := range lines {
			b.WriteString(l + "\n")
		}
		if len(lines) == 0 {
			b.WriteString("  (empty)\n")
		}
	}
	for _, m := range mounts {
		src := versionName.ReplaceAllString(paths.Replace(m.Source), "..VERSION")
		fmt.Fprintf(&b, "mount %s <- %s %s %s\n", m.Destination, m.Type, src, strings.Join(m.Options, ","))
	}
	return b.String()
}
