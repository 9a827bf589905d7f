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
	return writeBusybox(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/sh"}})
}

// WritePauseImage writes, like WriteBusyboxImage, an image whose program
// sleeps until killed: a pod sandbox ("pause") image for containerd's CRI
// plugin, which cannot pull registry.k8s.io/pause here.
func WritePauseImage(path, ref string) error {
	return writeBusybox(path, ref, ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Entrypoint: []string{"/bin/sleep", "infinity"}})
}

func writeBusybox(path, ref string, cfg ocispec.ImageConfig) error {
	bb, err := os.ReadFile(busyboxPath)
	if err != nil {
		return fmt.Errorf("busybox image: %w (run `make deps`: Debian package busybox-static)", err)
	}
	list, err := exec.Command(busyboxPath, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	for _, dir := range []string{"bin/", "dev/", "etc/", "proc/", "sys/", "tmp/"} {
		mode := int64(0o755)
		if dir == "tmp/" {
			mode = 0o1777
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: mode, ModTime: ocilayout.Epoch}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(bb)), ModTime: ocilayout.Epoch}); err != nil {
		return err
	}
	if _, err := tw.Write(bb); err != nil {
		return err
	}
	for _, applet := range strings.Fields(string(list)) {
		if applet == "busybox" {
			continue
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + applet, Linkname: "busybox", ModTime: ocilayout.Epoch}); err != nil {
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
