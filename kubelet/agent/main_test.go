package agent

import (
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// TestParseTaints checks --taints: "" means no taints at all (an empty,
// non-nil list, which nodeinfo does not replace by its default taint).
func TestParseTaints(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []corev1.Taint
		wantErr  bool
	}{
		{name: "none", in: "", want: []corev1.Taint{}},
		{name: "blank", in: " , ", want: []corev1.Taint{}},
		{name: "default", in: "virtual-kubelet.io/provider=feather:NoSchedule",
			want: []corev1.Taint{{Key: "virtual-kubelet.io/provider", Value: "feather", Effect: corev1.TaintEffectNoSchedule}}},
		{name: "two", in: "a:NoExecute,b=c:PreferNoSchedule", want: []corev1.Taint{
			{Key: "a", Effect: corev1.TaintEffectNoExecute}, {Key: "b", Value: "c", Effect: corev1.TaintEffectPreferNoSchedule}}},
		{name: "no effect", in: "a=b", wantErr: true},
		{name: "bad effect", in: "a=b:Sometimes", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTaints(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("parseTaints(%q) error = %v, want error %v", tc.in, err, tc.wantErr)
			}
			if tc.wantErr {
				return
			}
			if got == nil || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("parseTaints(%q) = %#v, want %#v", tc.in, got, tc.want)
			}
		})
	}
}
