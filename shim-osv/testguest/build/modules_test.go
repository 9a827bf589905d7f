package build

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// testdata/modules is a module tree of tiny ELF objects whose only content
// is a .modinfo section (made with objcopy --add-section): a depends on b
// and c_d (file c-d.ko), b on c_d, e on the built-in x, p and q on each
// other, m on a module that does not exist; z is xz-compressed.
func TestResolve(t *testing.T) {
	tree, err := OpenModuleTree(filepath.Join("testdata", "modules"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		want    []string
		order   []string
		wantErr string
	}{
		{name: "dependencies first", want: []string{"a"}, order: []string{"c_d", "b", "a"}},
		{name: "each once", want: []string{"b", "a", "c_d"}, order: []string{"c_d", "b", "a"}},
		{name: "dash in name", want: []string{"c-d"}, order: []string{"c_d"}},
		{name: "built-in dependency left out", want: []string{"e"}, order: []string{"e"}},
		{name: "built-in wanted", want: []string{"x", "y"}, order: nil},
		{name: "compressed", want: []string{"z"}, order: []string{"c_d", "z"}},
		{name: "cycle", want: []string{"p"}, wantErr: "cycle: p → q → p"},
		{name: "missing dependency", want: []string{"m"}, wantErr: "kernel module missing (needed by m) not found"},
		{name: "missing", want: []string{"nope"}, wantErr: "kernel module nope not found"},
		{name: "not an ELF", want: []string{"notelf"}, wantErr: "not an ELF module"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mods, err := tree.Resolve(tc.want)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%v) error = %v, want one containing %q", tc.want, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range mods {
				got = append(got, m.Name)
			}
			if !reflect.DeepEqual(got, tc.order) {
				t.Errorf("Resolve(%v) = %v, want %v", tc.want, got, tc.order)
			}
		})
	}
}

func TestModuleName(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"virtio_pci.ko", "virtio_pci"},
		{"virtio-pci.ko.xz", "virtio_pci"},
		{"fuse.ko.zst", "fuse"},
		{"fuse.ko.gz", "fuse"},
		{"modules.dep", ""},
		{"ko", ""},
	} {
		if got := moduleName(tc.file); got != tc.want {
			t.Errorf("moduleName(%q) = %q, want %q", tc.file, got, tc.want)
		}
	}
}

func TestOpenModuleTreeEmpty(t *testing.T) {
	if _, err := OpenModuleTree(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no kernel modules") {
		t.Errorf("OpenModuleTree(empty) = %v, want a no kernel modules error", err)
	}
}
