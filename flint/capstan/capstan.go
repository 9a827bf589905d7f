// Package capstan reads images from a Capstan repository — the local store
// of OSv's Capstan tool — so that Flint packs them: an image NAME lives in
// <repository>/NAME/, its disk as <basename of NAME>.qemu (qcow2, the OSv
// command line stored at byte 512) beside an index.yaml describing it.
package capstan

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"go.yaml.in/yaml/v3"
)

// Index is a Capstan image's index.yaml.
type Index struct {
	FormatVersion string `yaml:"format_version"`
	Version       string `yaml:"version"`
	Created       string `yaml:"created"`
	Description   string `yaml:"description"`
	Build         string `yaml:"build"`
}

// Image is an image found in a Capstan repository.
type Image struct {
	// Name is the Capstan name, e.g. "cloudius/osv-base".
	Name string
	// Disk is the path of its .qemu disk.
	Disk string
	// Index is its index.yaml.
	Index Index
}

// DefaultRepository is where Capstan keeps its images:
// $CAPSTAN_ROOT/repository, else ~/.capstan/repository.
func DefaultRepository() string {
	root := os.Getenv("CAPSTAN_ROOT")
	if root == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return ""
		}
		root = filepath.Join(home, ".capstan")
	}
	return filepath.Join(root, "repository")
}

// Find returns the image name in the repository at repo. A missing image
// or index.yaml is an error wrapping fs.ErrNotExist that says what was
// looked for.
func Find(repo, name string) (Image, error) {
	name = strings.Trim(name, "/")
	if name == "" || !filepath.IsLocal(name) {
		return Image{}, fmt.Errorf("capstan image name %q: want a name like app or cloudius/osv-base: %w", name, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Join(repo, name)
	img := Image{Name: name, Disk: filepath.Join(dir, filepath.Base(name)+".qemu")}
	if _, err := os.Stat(img.Disk); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Image{}, fmt.Errorf("capstan image %s: no disk %s (is %s a Capstan repository? see capstan images): %w", name, img.Disk, repo, err)
		}
		return Image{}, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "index.yaml"))
	if err != nil {
		return Image{}, fmt.Errorf("capstan image %s: %w", name, err)
	}
	if err := yaml.Unmarshal(b, &img.Index); err != nil {
		return Image{}, fmt.Errorf("capstan image %s: index.yaml: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return img, nil
}

// createdLayouts are the time formats Capstan has written into index.yaml.
var createdLayouts = []string{time.RFC3339, "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02T15:04:05", "2006-01-02"}

// CreatedTime parses index.yaml's created; ok is false when it is empty or
// in no known format.
func (x Index) CreatedTime() (t time.Time, ok bool) {
	for _, l := range createdLayouts {
		if t, err := time.Parse(l, strings.TrimSpace(x.Created)); err == nil {
			return t.UTC(), true
		}
	}
	return time.Time{}, false
}

// Annotations returns the manifest annotations that carry the image's
// index.yaml: its name as the title, description, version and creation
// time (RFC 3339).
func (img Image) Annotations() map[string]string {
	a := map[string]string{ocispec.AnnotationTitle: img.Name}
	if img.Index.Description != "" {
		a[ocispec.AnnotationDescription] = img.Index.Description
	}
	if img.Index.Version != "" {
		a[ocispec.AnnotationVersion] = img.Index.Version
	}
	if t, ok := img.Index.CreatedTime(); ok {
		a[ocispec.AnnotationCreated] = t.Format(time.RFC3339)
	}
	return a
}
