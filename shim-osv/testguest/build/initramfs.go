package build

import (
	"bytes"
	"compress/gzip"
	"path"

	"github.com/feather-edge/feather/shim-osv/testguest/guestinit"
)

// Initramfs returns the guest's initramfs, a gzip-compressed newc cpio
// archive: init (the guest-init binary) as /init, a link /NAME → /init for
// each program, the modules in /lib/modules with their load order in
// /lib/modules/load, and the few device nodes the kernel and init need
// before /dev is mounted. The same input gives the same bytes.
func Initramfs(initBin []byte, modules []Module) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression) // no name, mtime 0
	if err != nil {
		return nil, err
	}
	c := newCPIOWriter(zw, 0)
	for _, d := range []string{"dev", "etc", "lib", "lib/modules", "mnt", "proc", "root", "sys"} {
		c.Dir(d, 0o755)
	}
	c.Dir("tmp", 0o1777)
	c.CharDev("dev/console", 0o600, 5, 1)
	c.CharDev("dev/null", 0o666, 1, 3)
	c.CharDev("dev/ttyS0", 0o660, 4, 64)
	c.File("init", 0o755, initBin)
	for _, p := range guestinit.ProgramNames() {
		c.Symlink(p, "init")
	}
	var list bytes.Buffer
	for _, m := range modules {
		ko, err := readModule(m.Path)
		if err != nil {
			return nil, err
		}
		name := m.Name + ".ko"
		c.File(path.Join(guestinit.ModulesDir, name), 0o644, ko)
		list.WriteString(name + "\n")
	}
	c.File(guestinit.ModulesList, 0o644, list.Bytes())
	if err := c.Close(); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
