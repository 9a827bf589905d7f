// Package cri reads what containerd's CRI plugin (the kubelet's container
// runtime) writes into a container's OCI spec: the annotations that say
// whether the container is a pod's sandbox, which pod it belongs to, and
// from which image it came.
package cri

import (
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/containerd/log"
)

// The annotations, as containerd's internal/cri/annotations names them.
const (
	// ContainerType is ContainerTypeSandbox for a pod's sandbox (pause)
	// container and ContainerTypeContainer for the pod's containers.
	ContainerType          = "io.kubernetes.cri.container-type"
	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
	// SandboxID is the id of the pod's sandbox container; a sandbox's own.
	SandboxID = "io.kubernetes.cri.sandbox-id"
	// SandboxName and SandboxNamespace are the pod's name and namespace.
	SandboxName      = "io.kubernetes.cri.sandbox-name"
	SandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	// ContainerName is the container's name in the pod spec.
	ContainerName = "io.kubernetes.cri.container-name"
	// ImageName is the image reference the container was created from.
	ImageName = "io.kubernetes.cri.image-name"
)

// Annotations are an OCI spec's annotations.
type Annotations map[string]string

// Read returns the annotations of the OCI spec in bundle, nil when it has
// none or cannot be read.
func Read(bundle string) Annotations {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil
	}
	var spec struct {
		Annotations map[string]string `json:"annotations"`
	}
	if json.Unmarshal(b, &spec) != nil {
		return nil
	}
	return spec.Annotations
}

// IsSandbox reports whether the container is a pod's sandbox.
func (a Annotations) IsSandbox() bool { return a[ContainerType] == ContainerTypeSandbox }

// Fields are log fields naming the pod and container the annotations
// describe; none for a container CRI did not create.
func (a Annotations) Fields() log.Fields {
	f := log.Fields{}
	if ns, name := a[SandboxNamespace], a[SandboxName]; name != "" {
		f["pod"] = ns + "/" + name
	}
	for field, key := range map[string]string{"sandbox": SandboxID, "container": ContainerName, "type": ContainerType} {
		if v := a[key]; v != "" {
			f[field] = v
		}
	}
	return f
}
