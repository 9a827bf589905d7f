package agent

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

// TestPodClient checks that virtual-kubelet's delete of a pod the provider
// still tears down leaves it in the API, and that any other delete goes
// through.
func TestPodClient(t *testing.T) {
	for _, tc := range []struct {
		name     string
		stopping bool
		uid      bool // the delete has a UID precondition, as virtual-kubelet's
		gone     bool
	}{
		{name: "being torn down", stopping: true, uid: true, gone: false},
		{name: "torn down", stopping: false, uid: true, gone: true},
		{name: "no UID precondition", stopping: true, uid: false, gone: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default", UID: "u1"}}
			cs := fake.NewClientset(pod)
			c := podClient{cs.CoreV1(), func(uid types.UID) bool { return tc.stopping && uid == pod.UID }}
			opts := *metav1.NewDeleteOptions(0)
			if tc.uid {
				opts.Preconditions = metav1.NewUIDPreconditions(string(pod.UID))
			}
			if err := c.Pods("default").Delete(ctx, "p", opts); err != nil {
				t.Fatal(err)
			}
			_, err := cs.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
			if gone := apierrors.IsNotFound(err); gone != tc.gone {
				t.Errorf("pod gone = %v (%v), want %v", gone, err, tc.gone)
			}
		})
	}
}
