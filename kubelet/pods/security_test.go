package pods

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/containerd/v2/pkg/oci"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestVerifyRunAsNonRoot(t *testing.T) {
	yes := ptr(true)
	for _, tc := range []struct {
		name      string
		podSC     *corev1.PodSecurityContext
		sc        *corev1.SecurityContext
		imageUser string
		want      string // "" for allowed
	}{
		{"not asked", nil, nil, "", ""},
		{"image root", &corev1.PodSecurityContext{RunAsNonRoot: yes}, nil, "", "container has runAsNonRoot and image will run as root (pod: \"p_ns(u1)\", container: c)"},
		{"image uid 0", nil, &corev1.SecurityContext{RunAsNonRoot: yes}, "0:0", "image will run as root"},
		{"image uid 1000", nil, &corev1.SecurityContext{RunAsNonRoot: yes}, "1000", ""},
		{"image user name", nil, &corev1.SecurityContext{RunAsNonRoot: yes}, "nobody", "image has non-numeric user (nobody), cannot verify user is non-root"},
		{"runAsUser 0", &corev1.PodSecurityContext{RunAsNonRoot: yes, RunAsUser: ptr(int64(0))}, nil, "1000", "container's runAsUser breaks non-root policy"},
		{"pod runAsUser wins over the image", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000))}, &corev1.SecurityContext{RunAsNonRoot: yes}, "", ""},
		{"container runAsUser wins over the pod's", &corev1.PodSecurityContext{RunAsUser: ptr(int64(1000))}, &corev1.SecurityContext{RunAsNonRoot: yes, RunAsUser: ptr(int64(0))}, "", "breaks non-root policy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", UID: "u1"}, Spec: corev1.PodSpec{SecurityContext: tc.podSC}}
			c := &corev1.Container{Name: "c", SecurityContext: tc.sc}
			err := verifyRunAsNonRoot(pod, c, effectiveSecurityContext(pod, c), tc.imageUser)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// specOf applies opts to containerd's default spec.
func specOf(t *testing.T, opts []oci.SpecOpts) *oci.Spec {
	t.Helper()
	ctx := namespaces.WithNamespace(context.Background(), "test")
	s, err := oci.GenerateSpec(ctx, nil, &containers.Container{ID: "c1"}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSecurityOpts(t *testing.T) {
	strict := ptr(corev1.SupplementalGroupsPolicyStrict)
	for _, tc := range []struct {
		name  string
		podSC *corev1.PodSecurityContext
		sc    *corev1.SecurityContext
		check func(t *testing.T, s *oci.Spec)
	}{
		{"user, group, fsGroup and supplementalGroups", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict,
			RunAsUser: ptr(int64(1000)), RunAsGroup: ptr(int64(3000)), FSGroup: ptr(int64(2000)), SupplementalGroups: []int64{4000, 2000}}, nil,
			func(t *testing.T, s *oci.Spec) {
				u := s.Process.User
				if u.UID != 1000 || u.GID != 3000 || !slices.Equal(u.AdditionalGids, []uint32{3000, 2000, 4000}) {
					t.Errorf("user %+v, want 1000:3000 with groups 3000 2000 4000", u)
				}
			}},
		{"no privilege escalation, read-only root, caps", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict},
			&corev1.SecurityContext{AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
				Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}, Drop: []corev1.Capability{"CHOWN"}}},
			func(t *testing.T, s *oci.Spec) {
				if !s.Process.NoNewPrivileges || !s.Root.Readonly {
					t.Errorf("noNewPrivileges %v, readonly root %v", s.Process.NoNewPrivileges, s.Root.Readonly)
				}
				caps := s.Process.Capabilities.Bounding
				if !slices.Contains(caps, "CAP_NET_ADMIN") || slices.Contains(caps, "CAP_CHOWN") || !slices.Contains(caps, "CAP_KILL") {
					t.Errorf("capabilities %v: want NET_ADMIN added, CHOWN dropped, the defaults kept", caps)
				}
			}},
		{"drop ALL, add one", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict},
			&corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}}},
			func(t *testing.T, s *oci.Spec) {
				if caps := s.Process.Capabilities.Bounding; !slices.Equal(caps, []string{"CAP_NET_BIND_SERVICE"}) {
					t.Errorf("capabilities %v, want only CAP_NET_BIND_SERVICE", caps)
				}
			}},
		{"seccomp RuntimeDefault, sysctls", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			Sysctls:        []corev1.Sysctl{{Name: "kernel.shm_rmid_forced", Value: "1"}}}, nil,
			func(t *testing.T, s *oci.Spec) {
				if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != "SCMP_ACT_ERRNO" {
					t.Errorf("seccomp %+v, want containerd's default profile", s.Linux.Seccomp)
				}
				if s.Linux.Sysctl["kernel.shm_rmid_forced"] != "1" {
					t.Errorf("sysctls %v", s.Linux.Sysctl)
				}
			}},
		{"seccomp Unconfined and unset", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict},
			&corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			func(t *testing.T, s *oci.Spec) {
				if s.Linux.Seccomp != nil {
					t.Errorf("seccomp %+v, want none", s.Linux.Seccomp)
				}
			}},
		{"privileged: every capability, no seccomp", &corev1.PodSecurityContext{SupplementalGroupsPolicy: strict,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			&corev1.SecurityContext{Privileged: ptr(true)},
			func(t *testing.T, s *oci.Spec) {
				if !slices.Contains(s.Process.Capabilities.Bounding, "CAP_SYS_ADMIN") || s.Linux.Seccomp != nil || len(s.Linux.MaskedPaths) != 0 {
					t.Errorf("caps %v, seccomp %v, masked %v", s.Process.Capabilities.Bounding, s.Linux.Seccomp, s.Linux.MaskedPaths)
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns"}, Spec: corev1.PodSpec{SecurityContext: tc.podSC}}
			opts, err := securityOpts(pod, &corev1.Container{Name: "c", SecurityContext: tc.sc}, imageUserConfig{}, t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, specOf(t, opts))
		})
	}
}

func TestSysctlAdmission(t *testing.T) {
	a, err := newSysctlAllowlist([]string{"kernel.msg*", "net.core.somaxconn"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		sysctl  string
		hostNet bool
		want    string // "" for admitted
	}{
		{"safe", "kernel.shm_rmid_forced", false, ""},
		{"safe with slashes", "kernel/shm_rmid_forced", false, ""},
		{"allowed prefix", "kernel.msgmax", false, ""},
		{"allowed name", "net.core.somaxconn", false, ""},
		{"unsafe", "kernel.sem", false, `forbidden sysctl: "kernel.sem" not allowlisted`},
		{"net sysctl with host network", "net.ipv4.tcp_syncookies", true, `forbidden sysctl: "net.ipv4.tcp_syncookies" not allowed with host Net enabled`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{HostNetwork: tc.hostNet, SecurityContext: &corev1.PodSecurityContext{Sysctls: []corev1.Sysctl{{Name: tc.sysctl, Value: "1"}}}}}
			r := a.admit(pod)
			switch {
			case tc.want == "" && r != nil:
				t.Errorf("rejected: %+v", r)
			case tc.want != "" && (r == nil || r.Reason != "SysctlForbidden" || r.Message != tc.want):
				t.Errorf("got %+v, want SysctlForbidden %q", r, tc.want)
			}
		})
	}
	if _, err := newSysctlAllowlist([]string{"vm.overcommit_memory"}); err == nil {
		t.Error("a sysctl that is not namespaced was allowed")
	}
}
