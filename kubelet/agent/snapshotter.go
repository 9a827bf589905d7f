package agent

import (
	"context"
	"fmt"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/plugins"
	"github.com/containerd/log"
)

// Snapshotter choices besides a name.
const (
	// SnapshotterAuto picks SnapshotterFeather when containerd has it
	// (configured as a proxy plugin of that name), else containerd's
	// default.
	SnapshotterAuto = "auto"
	// SnapshotterFeather is the name Feather's snapshotter has in
	// containerd's config ([proxy_plugins.feather]; see snapshotter/).
	SnapshotterFeather = "feather"
)

// vmSnapshotter resolves the --snapshotter choice against containerd's
// plugins: a name containerd does not have is an error that says so, auto
// becomes SnapshotterFeather or "" (containerd's default).
func vmSnapshotter(ctx context.Context, cd *client.Client, choice string) (string, error) {
	if choice == "" {
		return "", nil
	}
	name := choice
	if choice == SnapshotterAuto {
		name = SnapshotterFeather
	}
	resp, err := cd.IntrospectionService().Plugins(ctx)
	if err != nil {
		return "", fmt.Errorf("containerd's snapshotters: %w", err)
	}
	ok := false
	for _, p := range resp.Plugins {
		ok = ok || p.Type == plugins.SnapshotPlugin.String() && p.ID == name && p.InitErr == nil
	}
	switch {
	case ok:
		log.G(ctx).WithField("snapshotter", name).Info("unikernel containers use this snapshotter")
		return name, nil
	case choice == SnapshotterAuto:
		log.G(ctx).Info("containerd has no feather snapshotter: unikernel containers use its default snapshotter (their disk writes then live in the shim's bundle)")
		return "", nil
	default:
		return "", fmt.Errorf("--snapshotter %s: containerd has no such snapshotter (configure it, e.g. [proxy_plugins.%s] type = \"snapshot\", or use auto)", choice, choice)
	}
}
