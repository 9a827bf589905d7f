package prereq

import (
	"fmt"
	"testing"
)

type recorder struct{ fatal, skip string }

func (r *recorder) Helper()                           {}
func (r *recorder) Fatalf(format string, args ...any) { r.fatal = fmt.Sprintf(format, args...) }
func (r *recorder) Skip(args ...any)                  { r.skip = fmt.Sprint(args...) }

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		name, env   string
		ok          bool
		fatal, skip bool
	}{
		{"present", "required", true, false, false},
		{"missing, skipped", "", false, false, true},
		{"missing, required", "required", false, true, false},
		{"missing, other value skips", "yes", false, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(Env, tc.env)
			var r recorder
			Check(&r, tc.ok, "needs a thing")
			if (r.fatal != "") != tc.fatal || (r.skip != "") != tc.skip {
				t.Errorf("fatal %q, skip %q; want fatal %v, skip %v", r.fatal, r.skip, tc.fatal, tc.skip)
			}
		})
	}
}
