package volumes

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
)

// checkHostPath checks a hostPath volume against its type, creates it for DirectoryOrCreate (mode 0755, parents
// too) and FileOrCreate (mode 0644; the parent must exist, as in kubelet), and returns the cleaned host path.
// With no type, anything is accepted, and a missing path is created as a directory, as containerd's CRI plugin
// does for a missing bind mount source: the Feather agent drives containerd without CRI, and without this the
// container would fail to start.
func checkHostPath(hp *corev1.HostPathVolumeSource) (string, error) {
	if !filepath.IsAbs(hp.Path) {
		return "", fmt.Errorf("hostPath %q must be absolute: %w", hp.Path, errdefs.ErrInvalidArgument)
	}
	p := filepath.Clean(hp.Path)
	var typ corev1.HostPathType
	if hp.Type != nil {
		typ = *hp.Type
	}

	fi, err := os.Stat(p)
	missing := errors.Is(err, fs.ErrNotExist)
	if err != nil && !missing {
		return "", fmt.Errorf("hostPath %s: %w", p, err)
	}
	if typ == corev1.HostPathUnset {
		if missing {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", fmt.Errorf("create missing hostPath directory %s: %w", p, err)
			}
		}
		return p, nil
	}
	mismatch := func(what string) (string, error) {
		if missing {
			return "", fmt.Errorf("hostPath %s of type %s does not exist: %w", p, typ, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("hostPath %s of type %s is not a %s (it is %s): %w", p, typ, what, describeMode(fi.Mode()), errdefs.ErrFailedPrecondition)
	}

	switch typ {
	case corev1.HostPathDirectoryOrCreate:
		if missing {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return "", fmt.Errorf("create hostPath directory %s: %w", p, err)
			}
			if err := os.Chmod(p, 0o755); err != nil {
				return "", fmt.Errorf("create hostPath directory %s: %w", p, err)
			}
			return p, nil
		}
		if !fi.IsDir() {
			return mismatch("directory")
		}
	case corev1.HostPathDirectory:
		if missing || !fi.IsDir() {
			return mismatch("directory")
		}
	case corev1.HostPathFileOrCreate:
		if missing {
			f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
			if errors.Is(err, fs.ErrNotExist) {
				return "", fmt.Errorf("create hostPath file %s: its parent directory does not exist (FileOrCreate does not create it): %w", p, errdefs.ErrNotFound)
			}
			if err != nil && !errors.Is(err, fs.ErrExist) {
				return "", fmt.Errorf("create hostPath file %s: %w", p, err)
			}
			if f != nil {
				if err := f.Close(); err != nil {
					return "", fmt.Errorf("create hostPath file %s: %w", p, err)
				}
				if err := os.Chmod(p, 0o644); err != nil {
					return "", fmt.Errorf("create hostPath file %s: %w", p, err)
				}
			}
			return p, nil
		}
		if !fi.Mode().IsRegular() {
			return mismatch("regular file")
		}
	case corev1.HostPathFile:
		if missing || !fi.Mode().IsRegular() {
			return mismatch("regular file")
		}
	case corev1.HostPathSocket:
		if missing || fi.Mode().Type() != fs.ModeSocket {
			return mismatch("socket")
		}
	case corev1.HostPathCharDev:
		if missing || fi.Mode().Type() != fs.ModeDevice|fs.ModeCharDevice {
			return mismatch("character device")
		}
	case corev1.HostPathBlockDev:
		if missing || fi.Mode().Type() != fs.ModeDevice {
			return mismatch("block device")
		}
	default:
		return "", fmt.Errorf("hostPath type %q is unknown (want one of DirectoryOrCreate, Directory, FileOrCreate, File, Socket, CharDevice, BlockDevice): %w",
			typ, errdefs.ErrInvalidArgument)
	}
	return p, nil
}

// describeMode names the kind of file of m, for errors.
func describeMode(m fs.FileMode) string {
	switch t := m.Type(); {
	case t == 0:
		return "a regular file"
	case t == fs.ModeDir:
		return "a directory"
	case t == fs.ModeSocket:
		return "a socket"
	case t == fs.ModeDevice|fs.ModeCharDevice:
		return "a character device"
	case t == fs.ModeDevice:
		return "a block device"
	case t == fs.ModeNamedPipe:
		return "a named pipe"
	default:
		return "of mode " + m.String()
	}
}
