package conformance

// causes are the argued causes of specs that do not pass, matched by a part
// of the spec's name (first match wins). Each says whether it is a missing
// feature, an image not buildable here, or not applicable to a virtual
// kubelet, and why, in one line. Fix the feature, then delete its line.
var causes = []struct{ spec, cause string }{
	{"as environment variable names", "image: the busybox `sh` built here (Debian 12's busybox-static 1.35; Debian 13's 1.37 does the same, measured) drops variables whose names are not shell identifiers (`data-1`, `1-data-1`) before `env` runs; the agent passes them: TestAgentEnv/env-names runs busybox `env` without a shell and sees `data-1`, `p-1-data-2`"},
	{"ConfigMap should be consumable via the environment", "image: as above, the spec's `envFrom` keys (`data-1`) are not shell identifiers and the busybox `sh` built here drops them; TestAgentEnv shows the agent passes them"},
	{"Secrets should be consumable via the environment", "image: as above, the spec's `envFrom` keys (`data-1`) are not shell identifiers and the busybox `sh` built here drops them; TestAgentEnv shows the agent passes them"},
	{"Pod InPlace Resize", "missing feature: in-place resize, `containerStatuses[].resources` not reported (being done: k13d)"},
	{"ImageVolume", "missing feature: image volumes (being done: k13e)"},
	{"Sysctls", "missing feature: pod sysctls (being done: k13a)"},
	{"AllowPrivilegeEscalation", "missing feature: allowPrivilegeEscalation (no_new_privs) (being done: k13a)"},
	{"fsGroup", "missing feature: fsGroup as a supplementary group and volume ownership (being done: k13a)"},
	{"KubeletManagedEtcHosts", "missing feature: kubelet-managed /etc/hosts (being done: k13a)"},
	{"hostAliases", "missing feature: hostAliases in a managed /etc/hosts (being done: k13a)"},
	{"FallbackToLogsOnError", "missing feature: terminationMessagePolicy FallbackToLogsOnError (being done: k13a)"},
	{"exec hook properly", "image: the hook runs `sh -c \"curl URL\"` (`sh: curl: not found`), and upstream's Alpine-based agnhost has curl; the agnhost image built here now has a curl (busybox wget) — fix committed after this run, not rerun yet"},
}
