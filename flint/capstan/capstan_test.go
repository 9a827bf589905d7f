package capstan

import (
	"errors"
	"os"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestFind(t *testing.T) {
	img, err := Find("testdata/repository", "cloudius/hello")
	if err != nil {
		t.Fatal(err)
	}
	if img.Disk != "testdata/repository/cloudius/hello/hello.qemu" || img.Index.Version != "v0.57.0" {
		t.Errorf("Find = %+v", img)
	}
	a := img.Annotations()
	for k, v := range map[string]string{
		ocispec.AnnotationTitle:       "cloudius/hello",
		ocispec.AnnotationDescription: "OSv hello world",
		ocispec.AnnotationVersion:     "v0.57.0",
		ocispec.AnnotationCreated:     "2024-03-05T10:20:00Z",
	} {
		if a[k] != v {
			t.Errorf("annotation %s = %q, want %q", k, a[k], v)
		}
	}
	for _, tc := range []struct{ repo, name string }{
		{"testdata/repository", "cloudius/absent"},
		{"testdata/absent", "cloudius/hello"},
	} {
		if _, err := Find(tc.repo, tc.name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Find(%s, %s) = %v, want not-exist", tc.repo, tc.name, err)
		}
	}
	if _, err := Find("testdata/repository", "../../etc"); err == nil {
		t.Error("Find accepted a name climbing out of the repository")
	}
}

func TestCreatedTime(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{{"2024-03-05T10:20:00Z", true}, {"2024-03-05 10:20:01", true}, {"2024-03-05", true}, {"", false}, {"yesterday", false}} {
		if _, ok := (Index{Created: tc.in}).CreatedTime(); ok != tc.ok {
			t.Errorf("CreatedTime(%q) ok = %v, want %v", tc.in, ok, tc.ok)
		}
	}
}
