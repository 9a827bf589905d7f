package pods

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/leases"
	"github.com/containerd/containerd/v2/core/mount"
	"github.com/containerd/containerd/v2/core/snapshots"
	"github.com/containerd/containerd/v2/defaults"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/image-spec/identity"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
)

// imageVolumeSnapshotter is where image volumes are unpacked and viewed:
// containerd's default, the one the pull unpacks into.
const imageVolumeSnapshotter = defaults.DefaultSnapshotter

// ImageMounter is the optional capability of Volumes that image volumes
// need (the volumes package's Manager has it): mounting a containerd
// snapshot's mounts on a volume directory.
type ImageMounter interface {
	// MountImage mounts mounts (a read-only view snapshot) on dir, the
	// directory Setup returned for an image volume, read-only. It is
	// idempotent: a dir that is a mount point already is left as it is.
	// Teardown unmounts it.
	MountImage(dir string, mounts []mount.Mount) error
}

// imageVolumeLease names the containerd lease that holds the view
// snapshots of a pod's image volumes, so that containerd's garbage
// collector keeps them while the pod runs and removes them with the lease.
func imageVolumeLease(uid types.UID) string { return "feather-imagevol-" + string(uid) }

// imageVolumeKey names the view snapshot of image volume name of pod uid.
func imageVolumeKey(uid types.UID, name string) string {
	return "feather-imagevol/" + string(uid) + "/" + name
}

// imageVolumes makes the image volumes container c mounts ready, as kubelet
// does before it starts a container (KEP-4639): each image is pulled per
// the volume's pullPolicy with the pod's imagePullSecrets (the same puller,
// back-off and reasons as a container's image: ErrImagePull,
// ImagePullBackOff, …), and a read-only view snapshot of it is mounted on
// the volume's directory, once per pod: the containers that mount it share
// that mount.
func (w *worker) imageVolumes(ctx context.Context, pod *corev1.Pod, c *corev1.Container) error {
	sources := map[string]*corev1.ImageVolumeSource{}
	for i := range pod.Spec.Volumes {
		if v := &pod.Spec.Volumes[i]; v.Image != nil {
			sources[v.Name] = v.Image
		}
	}
	if len(sources) == 0 {
		return nil
	}
	im, ok := w.p.volumes.(ImageMounter)
	done := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		src, dir := sources[vm.Name], w.mounts[vm.Name]
		if src == nil || dir == "" || done[vm.Name] {
			continue // Mounts names a volume that is not set up
		}
		done[vm.Name] = true
		if !ok {
			return &waitErr{reason: "CreateContainerError", event: "Failed", retry: time.Hour,
				msg: fmt.Sprintf("image volume %q: this agent's volumes cannot mount images", vm.Name)}
		}
		if src.Reference == "" {
			return &waitErr{reason: "InvalidImageName", event: "InspectFailed", retry: time.Hour,
				msg: fmt.Sprintf("image volume %q: reference is empty", vm.Name)}
		}
		img, err := w.pull(ctx, pod, src.Reference, src.PullPolicy)
		if err != nil {
			return err
		}
		mounts, err := w.p.imageView(ctx, pod.UID, vm.Name, img)
		if err == nil {
			err = im.MountImage(dir, mounts)
		}
		if err != nil {
			return &waitErr{reason: "CreateContainerError", event: "Failed", retry: 10 * time.Second,
				msg: fmt.Sprintf("image volume %q: mount image %q: %v", vm.Name, src.Reference, err)}
		}
	}
	return nil
}

// imageView returns the mounts of the read-only view snapshot of img for
// image volume name of pod uid, making it (and the pod's image-volume
// lease) if need be; img is unpacked first if it is not.
func (p *Provider) imageView(ctx context.Context, uid types.UID, name string, img client.Image) ([]mount.Mount, error) {
	unpacked, err := img.IsUnpacked(ctx, imageVolumeSnapshotter)
	if err != nil {
		return nil, fmt.Errorf("check unpacked: %w", err)
	}
	if !unpacked {
		if err := img.Unpack(ctx, imageVolumeSnapshotter); err != nil {
			return nil, fmt.Errorf("unpack: %w", err)
		}
	}
	diffIDs, err := img.RootFS(ctx)
	if err != nil {
		return nil, fmt.Errorf("read layers: %w", err)
	}
	lid := imageVolumeLease(uid)
	_, err = p.cd.LeasesService().Create(ctx, leases.WithID(lid), leases.WithLabels(map[string]string{LabelPodUID: string(uid)}))
	if err != nil && !errdefs.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create lease %s: %w", lid, err)
	}
	sn := p.cd.SnapshotService(imageVolumeSnapshotter)
	key := imageVolumeKey(uid, name)
	mounts, err := sn.View(leases.WithLease(ctx, lid), key, identity.ChainID(diffIDs).String(),
		snapshots.WithLabels(map[string]string{LabelPodUID: string(uid)}))
	if errdefs.IsAlreadyExists(err) {
		mounts, err = sn.Mounts(ctx, key)
	}
	if err != nil {
		return nil, fmt.Errorf("view snapshot %s: %w", key, err)
	}
	return mounts, nil
}

// removeImageVolumes removes the view snapshots and the lease of the image
// volumes of the pods for which gone is true, after their mounts are gone
// (Volumes.Teardown). It is
// idempotent; after a crash, the snapshots and leases are found by their
// labels.
func (p *Provider) removeImageVolumes(ctx context.Context, gone func(types.UID) bool) error {
	sn := p.cd.SnapshotService(imageVolumeSnapshotter)
	var keys []string
	err := sn.Walk(ctx, func(_ context.Context, info snapshots.Info) error {
		if uid, ok := info.Labels[LabelPodUID]; ok && gone(types.UID(uid)) {
			keys = append(keys, info.Name)
		}
		return nil
	}, fmt.Sprintf("labels.%q", LabelPodUID))
	if err != nil {
		return fmt.Errorf("list image volume snapshots: %w", err)
	}
	var errs []error
	for _, k := range keys {
		if err := sn.Remove(ctx, k); err != nil && !errdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove image volume snapshot %s: %w", k, err))
		}
	}
	ls, err := p.cd.LeasesService().List(ctx, fmt.Sprintf("labels.%q", LabelPodUID))
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("list image volume leases: %w", err))...)
	}
	for _, l := range ls {
		if gone(types.UID(l.Labels[LabelPodUID])) {
			if err := p.cd.LeasesService().Delete(ctx, l); err != nil && !errdefs.IsNotFound(err) {
				errs = append(errs, fmt.Errorf("delete lease %s: %w", l.ID, err))
			}
		}
	}
	return errors.Join(errs...)
}
