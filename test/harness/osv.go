package harness

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/pack"
	"github.com/feather-edge/feather/internal/prereq"
)

// RealOSvVersion is the OSv build in ../shared/osv that tests boot.
const RealOSvVersion = "v0.57.0"

// Local references of the real OSv images WriteRealOSvImages writes.
const (
	RealOSvDiskRef   = "docker.io/feather/osv-disk:" + RealOSvVersion
	RealOSvDirectRef = "docker.io/feather/osv-direct:" + RealOSvVersion
)

// RealOSv returns the directory of the real OSv kernel and disk (with its
// test programs: see ../shared/osv/README.md), beside the checkout; it is
// a Prerequisite, so CI (FEATHER_E2E=required) fails without it. The files
// are test data: read them there, never copy them into the project.
func RealOSv(t T) string {
	t.Helper()
	dir := prereq.OSv(t, RealOSvVersion)
	_, err := os.Stat(filepath.Join(dir, "loader-stripped.elf"))
	Prerequisite(t, err == nil, fmt.Sprintf("the real OSv %s kernel: %v", RealOSvVersion, err))
	return dir
}

// WriteRealOSvImages packs the real OSv in dir (see RealOSv) with flint as
// two images — disk boot and direct boot, both running the disk's stored
// command line — and writes them as OCI layout tarballs into out.
func WriteRealOSvImages(ctx context.Context, dir, out string) (disk, direct string, err error) {
	disk, direct = filepath.Join(out, "osv-disk.oci.tar"), filepath.Join(out, "osv-direct.oci.tar")
	for _, img := range []struct {
		path, ref string
		o         pack.Options
	}{
		{disk, RealOSvDiskRef, pack.Options{Disk: filepath.Join(dir, "usr.img"), TempDir: out}},
		{direct, RealOSvDirectRef, pack.Options{Disk: filepath.Join(dir, "usr.img"), Kernel: filepath.Join(dir, "loader-stripped.elf"), TempDir: out}},
	} {
		p, err := pack.Pack(ctx, img.o)
		if err != nil {
			return "", "", fmt.Errorf("pack the real OSv as %s: %w", img.ref, err)
		}
		p.Name = img.ref
		err = image.WriteTarFile(ctx, img.path, p.Image)
		p.Close()
		if err != nil {
			return "", "", fmt.Errorf("write %s: %w", img.path, err)
		}
	}
	return disk, direct, nil
}
