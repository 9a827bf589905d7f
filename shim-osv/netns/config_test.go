package netns

import (
	"regexp"
	"testing"
)

func TestTapName(t *testing.T) {
	valid := regexp.MustCompile(`^tap[0-9a-f]{12}$`)
	seen := map[string]string{}
	for _, tc := range []struct {
		name string
		id   string
	}{
		{name: "empty", id: ""},
		{name: "short", id: "a"},
		{name: "container id", id: "3f1c0e5a9b7d4e2f8a6c1b0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f"},
		{name: "odd characters", id: "pod/ns:name with spaces"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := TapName(tc.id)
			if !valid.MatchString(got) || len(got) > 15 {
				t.Errorf("TapName(%q) = %q, want tap+12 hex digits", tc.id, got)
			}
			if again := TapName(tc.id); again != got {
				t.Errorf("TapName not deterministic: %q then %q", got, again)
			}
			if other, dup := seen[got]; dup {
				t.Errorf("TapName(%q) = TapName(%q) = %q", tc.id, other, got)
			}
			seen[got] = tc.id
		})
	}
}
