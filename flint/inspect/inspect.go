// Package inspect reports what a Feather VM image holds: its kind
// (backend, runtime), command, environment, the disk's format and virtual
// size, whether it carries a kernel, and its layers — read from the image
// itself, every layer verified against its digest.
package inspect

import (
	"archive/tar"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/containerd/errdefs"
	"github.com/containerd/platforms"
	"github.com/opencontainers/go-digest"

	"github.com/feather-edge/feather/flint/image"
	"github.com/feather-edge/feather/flint/progress"
	"github.com/feather-edge/feather/vmimage"
)

// Report is what Inspect finds. Its JSON form is `flint inspect -o json`.
type Report struct {
	Name       string            `json:"name,omitempty"`
	Digest     digest.Digest     `json:"digest"`
	Platform   string            `json:"platform"`
	Backend    string            `json:"backend"`
	Runtime    string            `json:"runtime"`
	Entrypoint []string          `json:"entrypoint,omitempty"`
	Cmd        []string          `json:"cmd"`
	Env        []string          `json:"env"`
	WorkingDir string            `json:"workingDir,omitempty"`
	Labels     map[string]string `json:"labels,omitempty"`
	// Annotations are the manifest's.
	Annotations map[string]string `json:"annotations,omitempty"`
	// Disk is nil when the image has no disk (it is no VM image).
	Disk *Disk `json:"disk"`
	// Kernel and Initrd are nil when the image has none.
	Kernel *File    `json:"kernel"`
	Initrd *File    `json:"initrd"`
	Layers []Layer  `json:"layers"`
	Size   int64    `json:"size"`
	Errors []string `json:"problems,omitempty"`
}

// Disk is the image's boot disk.
type Disk struct {
	vmimage.DiskInfo
	// Size is the disk file's size in the layer, in bytes.
	Size int64 `json:"size"`
}

// File is a kernel or initrd.
type File struct {
	// Format is vmimage.KernelELF or KernelBzImage for a kernel.
	Format string `json:"format,omitempty"`
	Size   int64  `json:"size"`
}

// Layer is one layer.
type Layer struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Size      int64         `json:"size"`
	// Files are the layer's regular files, by path.
	Files []string `json:"files"`
}

// Inspect reads img and reports on it. It fails on an image it cannot
// trust — a layer that does not match its digest, or holds an absolute or
// ".." path — and lists in Report.Errors what keeps a readable image from
// being a Feather VM image Feather can run.
func Inspect(ctx context.Context, img image.Image) (Report, error) {
	c, err := image.Read(ctx, img)
	if err != nil {
		return Report{}, err
	}
	kind, err := vmimage.KindOf(c.ConfigJSON)
	if err != nil {
		return Report{}, err
	}
	r := Report{
		Name:        img.Name,
		Digest:      img.Manifest.Digest,
		Platform:    platforms.Format(c.Config.Platform),
		Backend:     kind.Backend,
		Runtime:     kind.Runtime,
		Entrypoint:  c.Config.Config.Entrypoint,
		Cmd:         c.Config.Config.Cmd,
		Env:         c.Config.Config.Env,
		WorkingDir:  c.Config.Config.WorkingDir,
		Labels:      c.Config.Config.Labels,
		Annotations: c.Manifest.Annotations,
		Size:        img.Manifest.Size + c.Manifest.Config.Size,
	}
	for _, l := range c.Manifest.Layers {
		r.Layers = append(r.Layers, Layer{Digest: l.Digest, MediaType: l.MediaType, Size: l.Size, Files: []string{}})
		r.Size += l.Size
	}
	err = image.Walk(ctx, img, c, func(e image.Entry) error {
		// Later layers override earlier ones, whiteouts delete.
		if dir, base := path.Split(e.Path); strings.HasPrefix(base, ".wh.") {
			r.remove(path.Join(dir, strings.TrimPrefix(base, ".wh.")))
			return nil
		}
		if !isVMPath(e.Path) {
			if e.Header.Typeflag == tar.TypeReg {
				r.Layers[e.Layer].Files = append(r.Layers[e.Layer].Files, e.Path)
			}
			return nil
		}
		r.remove(e.Path)
		if e.Header.Typeflag != tar.TypeReg {
			r.Errors = append(r.Errors, fmt.Sprintf("/%s is not a regular file (tar type %q): a VM file must be one", e.Path, e.Header.Typeflag))
			return nil
		}
		r.Layers[e.Layer].Files = append(r.Layers[e.Layer].Files, e.Path)
		head := make([]byte, vmimage.HeadSize)
		n, err := io.ReadFull(e.Content, head)
		if err != nil && n != int(min(e.Header.Size, int64(len(head)))) {
			return fmt.Errorf("read /%s: %w", e.Path, err)
		}
		head = head[:n]
		switch e.Path {
		case vmimage.DiskPath:
			info, err := vmimage.ProbeDisk(head, e.Header.Size)
			if err != nil {
				r.Errors = append(r.Errors, fmt.Sprintf("/%s: %v", e.Path, err))
				return nil
			}
			r.Disk = &Disk{DiskInfo: info, Size: e.Header.Size}
		case vmimage.KernelPath:
			format, err := vmimage.ProbeKernel(head)
			if err != nil {
				r.Errors = append(r.Errors, fmt.Sprintf("/%s: %v", e.Path, err))
			}
			r.Kernel = &File{Format: format, Size: e.Header.Size}
		case vmimage.InitrdPath:
			r.Initrd = &File{Size: e.Header.Size}
		}
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	if err := kind.Validate(); err != nil {
		r.Errors = append(r.Errors, err.Error())
	}
	if !kind.IsVM() {
		r.Errors = append(r.Errors, fmt.Sprintf("no %s label: a container image, not a Feather VM image", vmimage.LabelBackend))
	}
	if r.Disk == nil && !slices.ContainsFunc(r.Errors, func(s string) bool { return strings.HasPrefix(s, "/"+vmimage.DiskPath) }) {
		r.Errors = append(r.Errors, fmt.Sprintf("no /%s in the layers", vmimage.DiskPath))
	}
	if r.Initrd != nil && r.Kernel == nil {
		r.Errors = append(r.Errors, fmt.Sprintf("/%s without /%s", vmimage.InitrdPath, vmimage.KernelPath))
	}
	if len(r.Entrypoint)+len(r.Cmd) == 0 {
		r.Errors = append(r.Errors, "no command: the config has no Entrypoint or Cmd")
	}
	return r, nil
}

func isVMPath(p string) bool {
	return p == vmimage.DiskPath || p == vmimage.KernelPath || p == vmimage.InitrdPath
}

// remove forgets what earlier layers said about the VM file at p.
func (r *Report) remove(p string) {
	switch p {
	case vmimage.DiskPath:
		r.Disk = nil
	case vmimage.KernelPath:
		r.Kernel = nil
	case vmimage.InitrdPath:
		r.Initrd = nil
	}
}

// Check returns an ErrFailedPrecondition error listing r.Errors, nil when
// there are none: the image is a Feather VM image Feather can run.
func (r Report) Check() error {
	if len(r.Errors) == 0 {
		return nil
	}
	return fmt.Errorf("not a Feather VM image Feather can run: %s: %w", strings.Join(r.Errors, "; "), errdefs.ErrFailedPrecondition)
}

// WriteJSON writes r as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes r for a person to read.
func (r Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	row := func(k, format string, args ...any) {
		fmt.Fprintf(tw, "%s:\t"+format+"\n", append([]any{k}, args...)...)
	}
	if r.Name != "" {
		row("Name", "%s", r.Name)
	}
	row("Digest", "%s", r.Digest)
	row("Platform", "%s", r.Platform)
	if r.Backend == "" {
		row("Backend", "none (a container image)")
	} else {
		row("Backend", "%s", r.Backend)
		row("Runtime", "%s", r.Runtime)
	}
	if len(r.Entrypoint) > 0 {
		row("Entrypoint", "%s", quoteWords(r.Entrypoint))
	}
	row("Command", "%s", quoteWords(r.Cmd))
	for _, e := range r.Env {
		row("Env", "%s", e)
	}
	if r.WorkingDir != "" {
		row("WorkingDir", "%s", r.WorkingDir)
	}
	if r.Disk != nil {
		row("Disk", "/%s, %s, virtual size %s, %s in the image", vmimage.DiskPath, r.Disk.Format, progress.Bytes(r.Disk.VirtualSize), progress.Bytes(r.Disk.Size))
	} else {
		row("Disk", "none")
	}
	if r.Kernel != nil {
		row("Kernel", "/%s, %s, %s (direct boot)", vmimage.KernelPath, r.Kernel.Format, progress.Bytes(r.Kernel.Size))
	} else {
		row("Kernel", "none (boots from the disk)")
	}
	if r.Initrd != nil {
		row("Initrd", "/%s, %s", vmimage.InitrdPath, progress.Bytes(r.Initrd.Size))
	}
	for _, k := range slices.Sorted(maps.Keys(r.Labels)) {
		row("Label", "%s=%s", k, r.Labels[k])
	}
	for _, k := range slices.Sorted(maps.Keys(r.Annotations)) {
		row("Annotation", "%s=%s", k, r.Annotations[k])
	}
	row("Size", "%s (%d bytes, compressed)", progress.Bytes(r.Size), r.Size)
	for i, l := range r.Layers {
		row(fmt.Sprintf("Layer %d", i), "%s  %s  %s", l.Digest, progress.Bytes(l.Size), strings.Join(l.Files, " "))
	}
	for _, e := range r.Errors {
		row("Problem", "%s", e)
	}
	return tw.Flush()
}

// quoteWords renders words as OSv would read them back.
func quoteWords(words []string) string {
	out := make([]string, len(words))
	for i, w := range words {
		if w == "" || strings.ContainsAny(w, " \t;&") {
			w = `"` + w + `"`
		}
		out[i] = w
	}
	return strings.Join(out, " ")
}
