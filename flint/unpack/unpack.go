// Package unpack extracts an image's root filesystem — for a Feather VM
// image, its disk, kernel and initrd — into a new directory, and never
// outside it: entries with absolute or ".." paths refuse the whole image
// (image.Walk), and every file is created through an os.Root, which no
// path or symlink can leave.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/feather-edge/feather/flint/image"
)

// Result says what Unpack did.
type Result struct {
	// Files are the regular files written, by path in dir.
	Files []string
	// Skipped are entries not extracted: links, devices, FIFOs.
	Skipped []string
}

// Unpack extracts img's layers, in order, into dir, which must not exist.
// It extracts into a temporary directory beside dir and renames it into
// place when all is well, so dir is whole or absent.
func Unpack(ctx context.Context, img image.Image, dir string) (res Result, err error) {
	if _, err := os.Lstat(dir); err == nil {
		return res, fmt.Errorf("%s exists: unpack into a new directory: %w", dir, errdefs.ErrAlreadyExists)
	}
	c, err := image.Read(ctx, img)
	if err != nil {
		return res, err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return res, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	root, err := os.OpenRoot(tmp)
	if err != nil {
		return res, err
	}
	defer root.Close()
	written := map[string]bool{}
	err = image.Walk(ctx, img, c, func(e image.Entry) error {
		if e.Path == "." {
			return nil
		}
		dirName, base := path.Split(e.Path)
		if strings.HasPrefix(base, ".wh.") {
			target := path.Join(dirName, strings.TrimPrefix(base, ".wh."))
			delete(written, target)
			if err := root.RemoveAll(target); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			return nil
		}
		switch e.Header.Typeflag {
		case tar.TypeDir:
			return root.MkdirAll(e.Path, 0o755)
		case tar.TypeReg:
			if d := path.Dir(e.Path); d != "." {
				if err := root.MkdirAll(d, 0o755); err != nil {
					return err
				}
			}
			root.Remove(e.Path) // a later layer replaces the file
			f, err := root.OpenFile(e.Path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, os.FileMode(e.Header.Mode)&0o755|0o600)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, e.Content); err != nil {
				f.Close()
				return err
			}
			written[e.Path] = true
			return f.Close()
		default:
			res.Skipped = append(res.Skipped, e.Path)
			return nil
		}
	})
	if err != nil {
		return res, err
	}
	res.Files = slices.Sorted(maps.Keys(written))
	if err := os.Rename(tmp, dir); err != nil {
		return res, err
	}
	return res, nil
}
