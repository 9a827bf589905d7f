package build

import (
	"bufio"
	"bytes"
	"debug/elf"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// GuestModules are the modules the guest needs (without what they depend
// on): the virtio PCI transport, its disk and network, and virtio-fs.
var GuestModules = []string{"virtio_pci", "virtio_blk", "virtio_net", "fuse", "virtiofs"}

// Module is a kernel module file of a module tree.
type Module struct {
	// Name is the module's name, "_" for "-" (virtio_pci).
	Name string
	// Path is the file, under the tree.
	Path string
	// Depends names the modules it needs loaded first.
	Depends []string
}

// moduleExts are the module file suffixes, plain and compressed.
var moduleExts = []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"}

// moduleName returns the module name of a file name, "" if it is not a
// module.
func moduleName(file string) string {
	for _, ext := range moduleExts {
		if base, ok := strings.CutSuffix(file, ext); ok {
			return strings.ReplaceAll(base, "-", "_")
		}
	}
	return ""
}

// ModuleTree is an unpacked kernel's /lib/modules/VERSION.
type ModuleTree struct {
	Dir     string
	files   map[string]string // module name → path
	builtin map[string]bool
}

// OpenModuleTree indexes the module files under dir and reads its
// modules.builtin. Debian's package ships no modules.dep (depmod writes it
// when the package is installed), so dependencies come from each module's
// own .modinfo section, which is what depmod reads too.
func OpenModuleTree(dir string) (*ModuleTree, error) {
	t := &ModuleTree{Dir: dir, files: map[string]string{}, builtin: map[string]bool{}}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n := moduleName(d.Name()); n != "" && d.Type().IsRegular() {
			t.files[n] = p
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("index kernel modules: %w", err)
	}
	if len(t.files) == 0 {
		return nil, fmt.Errorf("no kernel modules (*.ko) under %s", dir)
	}
	b, err := os.ReadFile(filepath.Join(dir, "modules.builtin"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if n := moduleName(filepath.Base(strings.TrimSpace(sc.Text()))); n != "" {
			t.builtin[n] = true
		}
	}
	return t, nil
}

// Resolve returns the modules to load for want, dependencies before their
// users, each once, in a stable order. Built-in modules are left out.
func (t *ModuleTree) Resolve(want []string) ([]Module, error) {
	var (
		order []Module
		state = map[string]int{} // 1 visiting, 2 done
	)
	var visit func(name string, chain []string) error
	visit = func(name string, chain []string) error {
		name = strings.ReplaceAll(name, "-", "_")
		switch state[name] {
		case 2:
			return nil
		case 1:
			return fmt.Errorf("kernel modules depend on each other in a cycle: %s", strings.Join(append(chain, name), " → "))
		}
		if t.builtin[name] {
			state[name] = 2
			return nil
		}
		p, ok := t.files[name]
		if !ok {
			if len(chain) > 0 {
				return fmt.Errorf("kernel module %s (needed by %s) not found under %s", name, chain[len(chain)-1], t.Dir)
			}
			return fmt.Errorf("kernel module %s not found under %s", name, t.Dir)
		}
		state[name] = 1
		b, err := readModule(p)
		if err != nil {
			return err
		}
		deps, err := modinfoDepends(b)
		if err != nil {
			return fmt.Errorf("kernel module %s: %w", p, err)
		}
		for _, d := range deps {
			if err := visit(d, append(chain, name)); err != nil {
				return err
			}
		}
		state[name] = 2
		order = append(order, Module{Name: name, Path: p, Depends: deps})
		return nil
	}
	for _, w := range want {
		if err := visit(w, nil); err != nil {
			return nil, err
		}
	}
	return order, nil
}

// readModule returns a module file's ELF bytes, decompressing .ko.xz,
// .ko.zst and .ko.gz with the xz, zstd and gzip programs.
func readModule(p string) ([]byte, error) {
	var tool string
	switch {
	case strings.HasSuffix(p, ".ko"):
		return os.ReadFile(p)
	case strings.HasSuffix(p, ".xz"):
		tool = "xz"
	case strings.HasSuffix(p, ".zst"):
		tool = "zstd"
	case strings.HasSuffix(p, ".gz"):
		tool = "gzip"
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress kernel module %s with %s: %w", p, tool, err)
	}
	return out, nil
}

// modinfoDepends returns the depends= entry of a module's .modinfo section.
func modinfoDepends(ko []byte) ([]string, error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return nil, fmt.Errorf("not an ELF module: %w", err)
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return nil, errors.New("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return nil, fmt.Errorf("read .modinfo: %w", err)
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		if v, ok := bytes.CutPrefix(kv, []byte("depends=")); ok {
			if len(v) == 0 {
				return nil, nil
			}
			return strings.Split(string(v), ","), nil
		}
	}
	return nil, nil
}
