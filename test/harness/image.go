package harness

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/feather-edge/feather/ocilayout"
)

// busyboxPath is where Debian's busybox-static installs its static binary.
const busyboxPath = "/bin/busybox"

// WriteBusyboxImage writes an OCI image layout tarball to path holding
// Debian's static busybox as /bin/busybox, its applets linked beside it
// (/bin/sh, /bin/echo, …), named ref (e.g. "docker.io/feather/busybox:test").
// It needs no network: the image is made from the local busybox-static.
func WriteBusyboxImage(path, ref string) error {
	return writeBusybox(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}}, nil)
}

// WritePauseImage writes, like WriteBusyboxImage, an image whose program
// waits until killed and exits 0 at once on SIGTERM or SIGINT (as the
// upstream pause program does; a bare `sleep` as PID 1 would ignore SIGTERM
// and hold every stop for its whole grace period): a pod sandbox ("pause")
// image for containerd's CRI plugin, which cannot pull registry.k8s.io/pause
// here, and the pause image of the upstream e2e suite.
func WritePauseImage(path, ref string) error {
	return writeBusybox(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/bin"},
		Entrypoint: []string{"/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep infinity & wait"}}, nil)
}

// File is a regular file to add to an image's layer.
type File struct {
	// Name is its path in the image, relative ("agnhost", "etc/passwd").
	Name string
	// Mode is its permission bits.
	Mode int64
	// Data is its content.
	Data []byte
}

// Link is a symbolic link to add to an image's layer: Name → Target.
type Link struct{ Name, Target string }

// WriteAgnhostImage writes, like WriteBusyboxImage, the upstream e2e suite's
// agnhost image: the agnhost program (agnhost, a static build of
// k8s.io/kubernetes/test/images/agnhost) as /agnhost with the link
// /agnhost-2, its /uploads directory, the user (1000) and group (50000)
// that upstream's Dockerfile adds, and upstream's entrypoint ["/agnhost"]
// and command ["pause"]. Busybox stands in for the Alpine base and the
// tools upstream installs (sh, nc, wget, nslookup, …), with a curl that
// does `curl URL` through busybox wget.
func WriteAgnhostImage(path, ref string, agnhost []byte) error {
	extra := []File{
		{Name: "agnhost", Mode: 0o755, Data: agnhost},
		// The suite's exec hooks run `sh -c "curl URL"` (upstream installs
		// Alpine's curl); busybox's wget does that GET.
		{Name: "bin/curl", Mode: 0o755, Data: []byte("#!/bin/sh\n# curl URL, as the e2e suite uses it: busybox wget stands in for curl\nexec wget -q -O - \"$@\"\n")},
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(etcPasswd +
			"user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n")},
		{Name: "etc/group", Mode: 0o644, Data: []byte(etcGroup +
			"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")},
	}
	return writeImage(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Entrypoint: []string{"/agnhost"}, Cmd: []string{"pause"},
		ExposedPorts: map[string]struct{}{"80/tcp": {}, "8080/tcp": {}, "8081/tcp": {}, "9376/tcp": {}, "5000/tcp": {}}},
		[]string{"uploads/", "home/", "home/user-defined-in-image/"}, extra, []Link{{Name: "agnhost-2", Target: "agnhost"}})
}

// WriteNonewprivsImage writes, like WriteBusyboxImage, the upstream e2e
// suite's nonewprivs image: its program (nnp, a static build of
// k8s.io/kubernetes/test/images/nonewprivs, which prints its effective uid)
// as /usr/local/bin/nnp, owned by root and setuid as upstream's Dockerfile
// makes it, and upstream's command ["nnp"].
func WriteNonewprivsImage(path, ref string, nnp []byte) error {
	return writeImage(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/usr/local/bin:/bin"}, Cmd: []string{"nnp"}},
		[]string{"usr/", "usr/local/", "usr/local/bin/"}, []File{{Name: "usr/local/bin/nnp", Mode: 0o4755, Data: nnp}}, nil)
}

// etcPasswd and etcGroup are the accounts of busybox's own image.
const (
	etcPasswd = "root:x:0:0:root:/root:/bin/sh\ndaemon:x:1:1:daemon:/usr/sbin:/bin/false\nbin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\nnobody:x:65534:65534:nobody:/home:/bin/false\n"
	etcGroup = "root:x:0:\ndaemon:x:1:\nbin:x:2:\nsys:x:3:\nnogroup:x:65534:\n"
)

// writeBusybox writes an image of busybox, its applets and the accounts of
// busybox's own image (/etc/passwd, /etc/group), and the extra files.
func writeBusybox(path, ref string, cfg ocispec.ImageConfig, extra []File) error {
	return writeImage(path, ref, cfg, nil, append([]File{
		{Name: "etc/passwd", Mode: 0o644, Data: []byte(etcPasswd)},
		{Name: "etc/group", Mode: 0o644, Data: []byte(etcGroup)},
	}, extra...), nil)
}

// writeImage writes an image of one layer: busybox and its applets in /bin,
// the directories dirs (each ending in "/"), the files (a later file of the
// same name replaces an earlier one) and the links.
func writeImage(path, ref string, cfg ocispec.ImageConfig, dirs []string, files []File, links []Link) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("busybox image: %w (run `make deps`: Debian package busybox-static)", err)
	}
	list, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	// A file of the image replaces an applet of its name.
	given := map[string]bool{}
	for _, f := range files {
		given[f.Name] = true
	}
	var applets []Link
	for _, applet := range strings.Fields(string(list)) {
		if applet != "busybox" && !given["bin/"+applet] {
			applets = append(applets, Link{Name: "bin/" + applet, Target: "busybox"})
		}
	}
	return WriteImage(path, ref, cfg, append([]string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/"}, dirs...),
		append([]File{{Name: "bin/busybox", Mode: 0o755, Data: bb}}, files...), append(applets, links...))
}

// WriteImage writes an OCI image layout tarball to path, named ref, with
// config cfg and one layer: the directories dirs (each ending in "/"; tmp/
// sticky and writable by all), then the files (a later file of the same name
// replaces an earlier one), then the links.
func WriteImage(path, ref string, cfg ocispec.ImageConfig, dirs []string, files []File, links []Link) error {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, dir := range dirs {
		mode := int64(0o755)
		if dir == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: mode, ModTime: ocilayout.Epoch}); err != nil {
			return err
		}
	}
	last := map[string]int{}
	for i, f := range files {
		last[f.Name] = i
	}
	for i, f := range files {
		if last[f.Name] != i {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: f.Name, Mode: f.Mode, Size: int64(len(f.Data)), ModTime: ocilayout.Epoch}); err != nil {
			return err
		}
		if _, err := tw.Write(f.Data); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: l.Name, Linkname: l.Target, ModTime: ocilayout.Epoch}); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	config := ocispec.Image{
		Created:  &ocilayout.Epoch,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layer.Bytes())}},
	}
	return ocilayout.WriteFile(path, ref, config, [][]byte{layer.Bytes()})
}
