package pods

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

func TestExecRefusals(t *testing.T) {
	p := &Provider{cfg: Config{Runtimes: map[string]string{"runc": "io.containerd.runc.v2", "osv": "io.containerd.osv.v1"}},
		workers: map[types.UID]*worker{}}
	pod := &corev1.Pod{}
	pod.Namespace, pod.Name, pod.UID = "default", "p", "uid-1"
	pod.Spec.Containers = []corev1.Container{{Name: "app"}}
	p.workers[pod.UID] = &worker{p: p, uid: pod.UID, skel: pod, pod: pod}
	ctx := context.Background()

	for _, tc := range []struct {
		name string
		run  func() (int, error)
		is   func(error) bool
		want error
	}{
		{"unknown pod", func() (int, error) { return p.Exec(ctx, "default", "nope", "app", []string{"true"}, ExecIO{}) }, errdefs.IsNotFound, nil},
		{"unknown container", func() (int, error) { return p.Exec(ctx, "default", "p", "nope", []string{"true"}, ExecIO{}) }, errdefs.IsNotFound, nil},
		{"no command", func() (int, error) {
			return p.execIn(ctx, instance{Name: "app", Runtime: "io.containerd.runc.v2"}, nil, ExecIO{})
		}, errdefs.IsInvalidArgument, nil},
		{"one output with stdin", func() (int, error) {
			return p.execWith(ctx, instance{Name: "app"}, &execTarget{}, []string{"cat"}, ExecIO{Output: io.Discard, Stdin: strings.NewReader("x")})
		}, errdefs.IsInvalidArgument, nil},
		{"unikernel", func() (int, error) {
			return p.execIn(ctx, instance{Name: "app", Runtime: "io.containerd.osv.v1"}, []string{"sh"}, ExecIO{})
		}, errdefs.IsNotImplemented, ErrUnikernelExec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, err := tc.run()
			if err == nil || !tc.is(err) || code != -1 {
				t.Fatalf("got %d, %v", code, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}
