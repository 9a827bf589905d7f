package cri

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/log"
)

func TestRead(t *testing.T) {
	dir := t.TempDir()
	if a := Read(dir); a != nil {
		t.Errorf("no config.json: %v, want nil", a)
	}
	os.WriteFile(filepath.Join(dir, "config.json"), []byte(`{"annotations":{"`+ContainerType+`":"sandbox"}}`), 0o644)
	if a := Read(dir); !a.IsSandbox() {
		t.Errorf("annotations %v: not a sandbox", a)
	}
}

func TestFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		a    Annotations
		want log.Fields
	}{
		{"not CRI", nil, log.Fields{}},
		{"container", Annotations{ContainerType: ContainerTypeContainer, SandboxID: "sb", SandboxName: "web-1",
			SandboxNamespace: "default", ContainerName: "app"},
			log.Fields{"pod": "default/web-1", "sandbox": "sb", "container": "app", "type": "container"}},
		{"sandbox", Annotations{ContainerType: ContainerTypeSandbox, SandboxID: "sb", SandboxName: "web-1", SandboxNamespace: "prod"},
			log.Fields{"pod": "prod/web-1", "sandbox": "sb", "type": "sandbox"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.a.Fields()
			if len(got) != len(tc.want) {
				t.Fatalf("fields %v, want %v", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("field %s = %v, want %v", k, got[k], v)
				}
			}
		})
	}
}
