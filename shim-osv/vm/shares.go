package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/log"
)

// Kubernetes writes configMap, secret, projected and downwardAPI volumes
// with its atomic writer: each file is a link "key -> ..data/key", and
// "..data" a link to a hidden directory swapped on every update. OSv v0.57
// mis-resolves a relative link whose target starts with '.', and a chain of
// two links, so a guest cannot open such files by name. The shim shares a
// copy instead — the files by their names, links resolved — kept in the
// VM's directory and brought up to date when "..data" moves, so updates
// reach the guest as they reach a container.

// atomicData is the atomic writer's link to the current files.
const atomicData = "..data"

// RefreshInterval is how often a copied share is checked for an update.
var RefreshInterval = 2 * time.Second

// isAtomicDir reports whether dir is kept by Kubernetes' atomic writer.
func isAtomicDir(dir string) bool {
	fi, err := os.Lstat(filepath.Join(dir, atomicData))
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

// syncCopy makes dst show what src shows by name — links followed, the
// atomic writer's own entries ("..*") left out — and nothing else. Each
// file is replaced by a rename, so a reader sees the old or the new one.
func syncCopy(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	want := map[string]bool{}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			continue
		}
		want[name] = true
		s, d := filepath.Join(src, name), filepath.Join(dst, name)
		fi, err := os.Stat(s) // follows the links
		if err != nil {
			return fmt.Errorf("copy share %s: %w", s, err)
		}
		switch {
		case fi.IsDir():
			if err := syncCopy(s, d); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			if err := copyFile(s, d, fi.Mode().Perm()); err != nil {
				return fmt.Errorf("copy share %s: %w", s, err)
			}
		}
	}
	have, err := os.ReadDir(dst)
	if err != nil {
		return err
	}
	for _, e := range have {
		if !want[e.Name()] && !strings.HasPrefix(e.Name(), ".tmp-") {
			if err := os.RemoveAll(filepath.Join(dst, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

// copyFile writes src's content to dst through a temporary file and a
// rename, skipping a dst that already holds the same bytes.
func copyFile(src, dst string, perm os.FileMode) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	if old, err := os.ReadFile(dst); err == nil && string(old) == string(data) {
		return os.Chmod(dst, perm)
	}
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if fi, err := os.Lstat(dst); err == nil && fi.IsDir() {
		if err := os.RemoveAll(dst); err != nil {
			return err
		}
	}
	return os.Rename(tmp.Name(), dst)
}

// copyShare copies src to dst (see syncCopy) and returns the version it
// copied: where "..data" pointed.
func copyShare(src, dst string) (string, error) {
	version, err := os.Readlink(filepath.Join(src, atomicData))
	if err != nil {
		return "", err
	}
	return version, syncCopy(src, dst)
}

// refresh keeps dst a copy of src until ctx ends, re-copying whenever the
// atomic writer moves src's "..data" away from version.
func refresh(ctx context.Context, src, dst, version string) {
	last := version
	t := time.NewTicker(RefreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cur, err := os.Readlink(filepath.Join(src, atomicData))
		if err != nil {
			if !errors.Is(err, os.ErrNotExist) {
				log.G(ctx).WithError(err).WithField("share", src).Warn("check share for updates")
			}
			continue
		}
		if cur == last {
			continue
		}
		if cur, err = copyShare(src, dst); err != nil {
			log.G(ctx).WithError(err).WithField("share", src).Warn("update the copy of a share")
			continue
		}
		last = cur
		log.G(ctx).WithField("share", src).Debug("share updated")
	}
}
