package volumes

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func tokenVolume(name string, exp *int64, extra ...corev1.VolumeProjection) corev1.Volume {
	sources := append([]corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{
		Audience: "vault", ExpirationSeconds: exp, Path: "token",
	}}}, extra...)
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{Sources: sources}}}
}

func TestTokenRefreshAt(t *testing.T) {
	for _, tc := range []struct {
		name      string
		requested int64
		granted   *int64 // spec.expirationSeconds in the answer
		expiresIn time.Duration
		want      time.Duration // after t0
	}{
		{name: "one hour: at 80%", requested: 3600, granted: ptr(int64(3600)), expiresIn: time.Hour, want: 48 * time.Minute},
		{name: "ten minutes", requested: 600, granted: ptr(int64(600)), expiresIn: 10 * time.Minute, want: 8 * time.Minute},
		{name: "two days: at 24 hours", requested: 172800, granted: ptr(int64(172800)), expiresIn: 48 * time.Hour, want: 24 * time.Hour},
		{name: "server extended the lifetime", requested: 3600, granted: ptr(int64(365 * 24 * 3600)), expiresIn: 365 * 24 * time.Hour, want: 24 * time.Hour},
		{name: "no granted expiration: the requested one", requested: 3600, expiresIn: time.Hour, want: 48 * time.Minute},
		{name: "no expiration time: from now", requested: 3600, want: 48 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: tc.granted}}
			if tc.expiresIn != 0 {
				resp.Status.ExpirationTimestamp = metav1.NewTime(t0.Add(tc.expiresIn))
			}
			if got := tokenRefreshAt(resp, tc.requested, t0); !got.Equal(t0.Add(tc.want)) {
				t.Fatalf("refresh at %v after t0, want %v", got.Sub(t0), tc.want)
			}
		})
	}
}

func TestProjectedVolume(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t, configMap("ca", map[string]string{"ca.crt": "CERT"}), secret("db", map[string]string{"password": "pw"}))
	pod := newPod("uid-projected", tokenVolume("kube-api", nil,
		corev1.VolumeProjection{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "ca"}}},
		corev1.VolumeProjection{Secret: &corev1.SecretProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "db"},
			Items: []corev1.KeyToPath{{Key: "password", Path: "db/password", Mode: ptr(int32(0o400))}}}},
		corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.namespace"}}}}},
	))
	pod.Spec.ServiceAccountName = "builder"
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	if m := mountAt(t, dirs["kube-api"]); m == nil || m.FSType != "tmpfs" {
		t.Fatalf("projected volume mount %+v, want tmpfs", m)
	}
	equalMaps(t, "projected", readVolume(t, dirs["kube-api"]), map[string]string{
		"token":       "0644 token-1",
		"ca.crt":      "0644 CERT",
		"db/password": "0400 pw",
		"namespace":   "0644 default",
	})

	if len(f.requests) != 1 {
		t.Fatalf("%d token requests, want 1", len(f.requests))
	}
	req := f.requests[0]
	if f.sa[0] != "builder" || len(req.Spec.Audiences) != 1 || req.Spec.Audiences[0] != "vault" || *req.Spec.ExpirationSeconds != 3600 {
		t.Errorf("token request for %q: %+v; want service account builder, audience vault, 3600 s", f.sa[0], req.Spec)
	}
	if b := req.Spec.BoundObjectRef; b == nil || b.Kind != "Pod" || b.APIVersion != "v1" || b.Name != "web" || b.UID != "uid-projected" {
		t.Errorf("token bound to %+v, want the pod", b)
	}

	// Setup again before the refresh time: no new token.
	f.now = t0.Add(10 * time.Minute)
	if _, err := f.m.Setup(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if len(f.requests) != 1 {
		t.Fatalf("%d token requests after a second Setup, want the cached token", len(f.requests))
	}
}

func TestRefreshToken(t *testing.T) {
	requiresRoot(t)
	f := newFixture(t)
	f.m.ResyncPeriod = 24 * time.Hour // so that next is the token's time
	pod := newPod("uid-token", tokenVolume("tok", ptr(int64(3600))))
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(dirs["tok"], "token")
	read := func() string {
		b, err := os.ReadFile(tokenFile)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}

	next, err := f.m.Refresh(context.Background(), pod)
	if err != nil || !next.Equal(t0.Add(48*time.Minute)) {
		t.Fatalf("Refresh = %v, %v; want next at t0+48m", next, err)
	}

	// Just before 80% of the lifetime: nothing to do.
	f.now = t0.Add(48*time.Minute - time.Second)
	if _, err := f.m.Refresh(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "token-1" || len(f.requests) != 1 {
		t.Fatalf("token %q after %d requests before its refresh time, want token-1 after 1", got, len(f.requests))
	}

	// At 80%: a new token, written atomically; the next one due 48 minutes later.
	f.now = t0.Add(48 * time.Minute)
	next, err = f.m.Refresh(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	if got := read(); got != "token-2" {
		t.Fatalf("token %q after refresh, want token-2", got)
	}
	if !next.Equal(f.now.Add(48 * time.Minute)) {
		t.Fatalf("next %v, want 48 minutes after the renewal", next.Sub(t0))
	}

	// The API server fails: the old token stays, and Refresh asks to be called again soon.
	f.now = t0.Add(96 * time.Minute)
	f.tokenErr = apierrors.NewServiceUnavailable("apiserver down")
	next, err = f.m.Refresh(context.Background(), pod)
	if !apierrors.IsServiceUnavailable(err) || !strings.HasPrefix(err.Error(), `volume "tok": `) {
		t.Fatalf("Refresh with a failing API: %v", err)
	}
	if got := read(); got != "token-2" {
		t.Fatalf("token %q after a failed renewal, want token-2 kept", got)
	}
	if !next.Equal(f.now.Add(tokenRetry)) {
		t.Fatalf("next %v after a failure, want %v", next.Sub(f.now), tokenRetry)
	}
	f.tokenErr = nil
	if _, err := f.m.Refresh(context.Background(), pod); err != nil || read() != "token-3" {
		t.Fatalf("Refresh after the API is back: %v, token %q", err, read())
	}
}

func TestRefreshContent(t *testing.T) {
	f := newFixture(t, configMap("app", map[string]string{"a": "1", "b": "2"}))
	pod := newPod("uid-refresh",
		cmVolume("cfg", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}),
		corev1.Volume{Name: "labels", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{
			{Path: "labels", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.labels"}},
		}}}},
		corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	)
	pod.Labels = map[string]string{"v": "1"}
	dirs, err := f.setup(t, pod)
	if err != nil {
		t.Fatal(err)
	}

	// Nothing changed: nothing is rewritten, and next is the resync period.
	before := versions(t, dirs["cfg"])
	next, err := f.m.Refresh(context.Background(), pod)
	if err != nil || !next.Equal(t0.Add(DefaultResyncPeriod)) {
		t.Fatalf("Refresh = %v, %v; want next after the default resync period", next, err)
	}
	if after := versions(t, dirs["cfg"]); after[0] != before[0] {
		t.Fatalf("unchanged configMap rewritten")
	}

	// The configMap and the labels change.
	if _, err := f.cs.CoreV1().ConfigMaps("default").Update(context.Background(),
		configMap("app", map[string]string{"a": "10", "c": "3"}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod.Labels = map[string]string{"v": "2"}
	if _, err := f.m.Refresh(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	equalMaps(t, "configMap", readVolume(t, dirs["cfg"]), map[string]string{"a": "0644 10", "c": "0644 3"})
	equalMaps(t, "labels", readVolume(t, dirs["labels"]), map[string]string{"labels": "0644 v=\"2\""})

	// The configMap is deleted: the volume keeps its files and the error names it.
	if err := f.cs.CoreV1().ConfigMaps("default").Delete(context.Background(), "app", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = f.m.Refresh(context.Background(), pod)
	if !apierrors.IsNotFound(err) || !errdefs.IsNotFound(err) || !strings.HasPrefix(err.Error(), `volume "cfg": `) {
		t.Fatalf("Refresh after delete: %v", err)
	}
	equalMaps(t, "kept", readVolume(t, dirs["cfg"]), map[string]string{"a": "0644 10", "c": "0644 3"})
}

func TestRefreshSkipsVolumesNotSetUp(t *testing.T) {
	f := newFixture(t, configMap("app", map[string]string{"a": "1"}))
	pod := newPod("uid-nosetup", cmVolume("cfg", corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "app"}}))
	if _, err := f.m.Refresh(context.Background(), pod); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.m.Root, "uid-nosetup")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Refresh created a volume Setup never made: %v", err)
	}
}

func TestRefreshNothingToDo(t *testing.T) {
	f := newFixture(t)
	pod := newPod("uid-static", corev1.Volume{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
	if _, err := f.setup(t, pod); err != nil {
		t.Fatal(err)
	}
	next, err := f.m.Refresh(context.Background(), pod)
	if err != nil || !next.IsZero() {
		t.Fatalf("Refresh = %v, %v; want a zero time for a pod with nothing to refresh", next, err)
	}
}

func TestProjectedRefused(t *testing.T) {
	for _, tc := range []struct {
		name  string
		src   corev1.VolumeProjection
		isErr func(error) bool
		msg   string
	}{
		{
			name:  "clusterTrustBundle",
			src:   corev1.VolumeProjection{ClusterTrustBundle: &corev1.ClusterTrustBundleProjection{Name: ptr("ca"), Path: "ca.pem"}},
			isErr: errdefs.IsNotImplemented,
			msg:   `volume "p": projected source 1: clusterTrustBundle sources are not supported by Feather`,
		},
		{
			name:  "podCertificate",
			src:   corev1.VolumeProjection{PodCertificate: &corev1.PodCertificateProjection{SignerName: "x/y"}},
			isErr: errdefs.IsNotImplemented,
			msg:   "podCertificate sources are not supported",
		},
		{
			name:  "empty source",
			src:   corev1.VolumeProjection{},
			isErr: errdefs.IsInvalidArgument,
			msg:   "projected source 1: source sets no",
		},
		{
			name: "path clash with the token",
			src: corev1.VolumeProjection{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "token", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}},
			isErr: errdefs.IsInvalidArgument,
			msg:   `path "token" is written twice`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			pod := newPod("uid-refused", tokenVolume("p", nil, tc.src))
			_, err := f.setup(t, pod)
			if err == nil || !tc.isErr(err) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Setup: %v; want an error of the right kind containing %q", err, tc.msg)
			}
			if _, err := os.Lstat(filepath.Join(f.m.Root, "uid-refused", "volumes", "p")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("refused volume left behind: %v", err)
			}
		})
	}
}
