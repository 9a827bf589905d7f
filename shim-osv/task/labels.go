package task

import "github.com/feather-edge/feather/vmimage"

// kindFromLabels reads the image's Feather labels as ctr run copies them
// onto the container (and the agent sets them).
func kindFromLabels(labels map[string]string) vmimage.Kind {
	k := vmimage.Kind{Backend: labels[vmimage.LabelBackend], Runtime: labels[vmimage.LabelRuntime]}
	if k.Backend != "" && k.Runtime == "" {
		k.Runtime = vmimage.RuntimeQEMU
	}
	return k
}
