package pods

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/containerd/v2/contrib/seccomp"
	"github.com/containerd/containerd/v2/core/containers"
	"github.com/containerd/containerd/v2/pkg/oci"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
)

// The securityContext, as kubelet's kuberuntime (determineEffectiveSecurityContext,
// verifyRunAsNonRoot) and containerd's CRI plugin (containerSpecOpts) turn it
// into a container's OCI spec.

// effectiveSecurityContext is c's securityContext with the pod's runAsUser,
// runAsGroup, runAsNonRoot, seccompProfile and SELinux options filled in
// where c sets none, as kubelet's DetermineEffectiveSecurityContext.
func effectiveSecurityContext(pod *corev1.Pod, c *corev1.Container) *corev1.SecurityContext {
	sc := &corev1.SecurityContext{}
	if c.SecurityContext != nil {
		sc = c.SecurityContext.DeepCopy()
	}
	psc := pod.Spec.SecurityContext
	if psc == nil {
		return sc
	}
	if sc.RunAsUser == nil {
		sc.RunAsUser = psc.RunAsUser
	}
	if sc.RunAsGroup == nil {
		sc.RunAsGroup = psc.RunAsGroup
	}
	if sc.RunAsNonRoot == nil {
		sc.RunAsNonRoot = psc.RunAsNonRoot
	}
	if sc.SeccompProfile == nil {
		sc.SeccompProfile = psc.SeccompProfile
	}
	if sc.SELinuxOptions == nil {
		sc.SELinuxOptions = psc.SELinuxOptions
	}
	return sc
}

// imageUser splits an image config's User ("uid[:gid]" or "name[:group]")
// as containerd's CRI image status does: a numeric user is a uid; none is
// root (uid 0), as kubelet's getImageUser assumes.
func imageUser(user string) (uid *int64, name string) {
	u, _, _ := strings.Cut(user, ":")
	if u == "" {
		return new(int64), ""
	}
	if n, err := strconv.ParseInt(u, 10, 64); err == nil {
		return &n, ""
	}
	return nil, u
}

// podName is kubelet's format.Pod: name_namespace(uid).
func podName(pod *corev1.Pod) string {
	return fmt.Sprintf("%s_%s(%s)", pod.Name, pod.Namespace, pod.UID)
}

// verifyRunAsNonRoot refuses, with kubelet's words, a container with
// runAsNonRoot that would run as root: runAsUser 0, or no runAsUser and an
// image user that is 0 (or none), or a user name whose uid cannot be known
// before the container starts.
func verifyRunAsNonRoot(pod *corev1.Pod, c *corev1.Container, sc *corev1.SecurityContext, imageUserField string) error {
	if sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot {
		return nil
	}
	if sc.RunAsUser != nil {
		if *sc.RunAsUser == 0 {
			return fmt.Errorf("container's runAsUser breaks non-root policy (pod: %q, container: %s)", podName(pod), c.Name)
		}
		return nil
	}
	uid, name := imageUser(imageUserField)
	switch {
	case uid == nil:
		return fmt.Errorf("container has runAsNonRoot and image has non-numeric user (%s), cannot verify user is non-root (pod: %q, container: %s)", name, podName(pod), c.Name)
	case *uid == 0:
		return fmt.Errorf("container has runAsNonRoot and image will run as root (pod: %q, container: %s)", podName(pod), c.Name)
	case *uid < 0 || *uid > 1<<31-1:
		return fmt.Errorf("container has runAsNonRoot and image has an invalid user id (%d). (Must be 1-(%d)) (pod: %q, container: %s)", *uid, 1<<31-1, podName(pod), c.Name)
	}
	return nil
}

// securityOpts turns the effective securityContext of c into spec options:
// the user (runAsUser, runAsGroup; else the image's), the groups (those of
// the user in the image's /etc/group, then fsGroup and supplementalGroups,
// as kubelet orders them), privileged (every capability and host device, no
// masked paths, no seccomp), capabilities (add/drop, ALL included),
// readOnlyRootFilesystem, allowPrivilegeEscalation: false (no_new_privs),
// seccompProfile (RuntimeDefault: containerd's default profile; Localhost:
// the file under seccompRoot; Unconfined or unset: none, kubelet's default
// without --seccomp-default) and the pod's sysctls.
func securityOpts(pod *corev1.Pod, c *corev1.Container, ic imageUserConfig, seccompRoot string) ([]oci.SpecOpts, error) {
	sc := effectiveSecurityContext(pod, c)
	if err := verifyRunAsNonRoot(pod, c, sc, ic.User); err != nil {
		return nil, err
	}
	var opts []oci.SpecOpts
	userstr := "0"
	switch {
	case sc.RunAsUser != nil:
		userstr = strconv.FormatInt(*sc.RunAsUser, 10)
		if sc.RunAsGroup != nil {
			opts = append(opts, oci.WithUIDGID(uint32(*sc.RunAsUser), uint32(*sc.RunAsGroup)))
		} else {
			opts = append(opts, oci.WithUserID(uint32(*sc.RunAsUser)))
		}
	case sc.RunAsGroup != nil:
		if ic.User != "" {
			u, _, _ := strings.Cut(ic.User, ":")
			userstr = u
			opts = append(opts, oci.WithUser(u))
		}
		opts = append(opts, withGID(uint32(*sc.RunAsGroup)))
	case ic.User != "":
		userstr, _, _ = strings.Cut(ic.User, ":")
	}
	var groups []int64
	if psc := pod.Spec.SecurityContext; psc != nil {
		if psc.FSGroup != nil {
			groups = append(groups, *psc.FSGroup)
		}
		groups = append(groups, psc.SupplementalGroups...)
	}
	strict := pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.SupplementalGroupsPolicy != nil &&
		*pod.Spec.SecurityContext.SupplementalGroupsPolicy == corev1.SupplementalGroupsPolicyStrict
	if !strict {
		opts = append(opts, oci.WithAdditionalGIDs(userstr))
	} else {
		opts = append(opts, withGroups(nil, true))
	}
	opts = append(opts, withGroups(groups, false))

	privileged := sc.Privileged != nil && *sc.Privileged
	if privileged {
		opts = append(opts, oci.WithPrivileged, oci.WithHostDevices, oci.WithAllDevicesAllowed)
	}
	if cp := sc.Capabilities; cp != nil && !privileged {
		var add, drop []string
		for _, x := range cp.Add {
			if n := capName(x); n == "ALL" {
				opts = append(opts, oci.WithAllCurrentCapabilities)
			} else {
				add = append(add, n)
			}
		}
		for _, x := range cp.Drop {
			if n := capName(x); n == "ALL" {
				opts = append(opts, oci.WithCapabilities(nil))
			} else {
				drop = append(drop, n)
			}
		}
		opts = append(opts, oci.WithAddedCapabilities(add), oci.WithDroppedCapabilities(drop))
	}
	if sc.ReadOnlyRootFilesystem != nil && *sc.ReadOnlyRootFilesystem {
		opts = append(opts, oci.WithRootFSReadonly())
	}
	if sc.AllowPrivilegeEscalation != nil && !*sc.AllowPrivilegeEscalation {
		opts = append(opts, oci.WithNoNewPrivileges)
	}
	if sp := sc.SeccompProfile; sp != nil && !privileged {
		switch sp.Type {
		case corev1.SeccompProfileTypeRuntimeDefault:
			opts = append(opts, seccomp.WithDefaultProfile())
		case corev1.SeccompProfileTypeLocalhost:
			if sp.LocalhostProfile == nil || *sp.LocalhostProfile == "" {
				return nil, fmt.Errorf("localhostProfile must be set if seccompProfile type is Localhost")
			}
			rel := filepath.Clean("/" + *sp.LocalhostProfile)
			opts = append(opts, seccomp.WithProfile(filepath.Join(seccompRoot, rel)))
		case corev1.SeccompProfileTypeUnconfined:
		default:
			return nil, fmt.Errorf("seccomp profile type %q is not known (RuntimeDefault, Localhost, Unconfined)", sp.Type)
		}
	}
	if psc := pod.Spec.SecurityContext; psc != nil && len(psc.Sysctls) > 0 {
		sysctls := make(map[string]string, len(psc.Sysctls))
		for _, s := range psc.Sysctls {
			sysctls[s.Name] = s.Value
		}
		opts = append(opts, withSysctls(sysctls))
	}
	return opts, nil
}

// imageUserConfig is what securityOpts needs of the image's config.
type imageUserConfig struct{ User string }

// withGID sets the process's group, keeping its user.
func withGID(gid uint32) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		s.Process.User.GID = gid
		return nil
	}
}

// withGroups appends gids to the process's additional groups, once each;
// with reset it first clears them (supplementalGroupsPolicy Strict: none of
// the image's /etc/group).
func withGroups(gids []int64, reset bool) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Process == nil {
			s.Process = &specs.Process{}
		}
		u := &s.Process.User
		if reset {
			u.AdditionalGids = []uint32{u.GID}
		}
		for _, g := range gids {
			if !slices.Contains(u.AdditionalGids, uint32(g)) {
				u.AdditionalGids = append(u.AdditionalGids, uint32(g))
			}
		}
		return nil
	}
}

// withSysctls sets the pod's sysctls in the container's namespaces (runc
// writes them before the process starts), as containerd's CRI plugin.
func withSysctls(sysctls map[string]string) oci.SpecOpts {
	return func(_ context.Context, _ oci.Client, _ *containers.Container, s *oci.Spec) error {
		if s.Linux == nil {
			s.Linux = &specs.Linux{}
		}
		if s.Linux.Sysctl == nil {
			s.Linux.Sysctl = map[string]string{}
		}
		for k, v := range sysctls {
			s.Linux.Sysctl[k] = v
		}
		return nil
	}
}

func capName(c corev1.Capability) string {
	s := strings.ToUpper(string(c))
	if s == "ALL" || strings.HasPrefix(s, "CAP_") {
		return s
	}
	return "CAP_" + s
}
