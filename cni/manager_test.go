package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/version"
)

// fakeExec plays CNI plugins: each in plugins exists; "ipam" hands out
// 10.9.0.2, .3, …; a plugin named in failAdd fails ADD. It records every
// call as "COMMAND type containerID".
type fakeExec struct {
	mu      sync.Mutex
	plugins []string
	failAdd string
	next    int
	calls   []string
}

func (f *fakeExec) FindInPath(plugin string, paths []string) (string, error) {
	if slices.Contains(f.plugins, plugin) {
		return "/fake/" + plugin, nil
	}
	return "", fmt.Errorf("failed to find plugin %q in path %s", plugin, paths)
}

func (f *fakeExec) Decode(b []byte) (version.PluginInfo, error) {
	d := version.PluginDecoder{}
	return d.Decode(b)
}

func (f *fakeExec) ExecPlugin(_ context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	env := map[string]string{}
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		env[k] = v
	}
	typ := filepath.Base(path)
	cmd := env["CNI_COMMAND"]
	f.mu.Lock()
	defer f.mu.Unlock()
	if cmd == "VERSION" {
		return []byte(`{"cniVersion":"1.0.0","supportedVersions":["0.3.1","0.4.0","1.0.0"]}`), nil
	}
	f.calls = append(f.calls, cmd+" "+typ+" "+env["CNI_CONTAINERID"])
	var conf struct {
		PrevResult json.RawMessage `json:"prevResult"`
	}
	_ = json.Unmarshal(stdin, &conf)
	switch {
	case cmd == "ADD" && typ == f.failAdd:
		return nil, errors.New(`{"cniVersion":"1.0.0","code":11,"msg":"no luck"}`)
	case cmd == "ADD" && typ == "ipam":
		f.next++
		return fmt.Appendf(nil, `{"cniVersion":"1.0.0","interfaces":[{"name":"br0"},{"name":"eth0","sandbox":%q}],
			"ips":[{"interface":0,"address":"10.9.0.1/24"},{"interface":1,"address":"10.9.0.%d/24","gateway":"10.9.0.1"}]}`,
			env["CNI_NETNS"], f.next+1), nil
	case cmd == "ADD":
		return conf.PrevResult, nil
	}
	return nil, nil
}

func (f *fakeExec) log() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.calls
	f.calls = nil
	return out
}

const fakeList = `{"cniVersion":"1.0.0","name":"fake","plugins":[{"type":"ipam"},{"type":"portmap","capabilities":{"portMappings":true}}]}`

func newFake(t *testing.T, conf string) (*Manager, *fakeExec, string) {
	t.Helper()
	dir := t.TempDir()
	confDir := filepath.Join(dir, "net.d")
	if conf != "" {
		if err := os.MkdirAll(confDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(confDir, "10-fake.conflist"), []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fe := &fakeExec{plugins: []string{"ipam", "portmap"}}
	return New(Config{ConfDir: confDir, StateDir: filepath.Join(dir, "state"), Exec: fe}), fe, confDir
}

func TestReady(t *testing.T) {
	for _, tc := range []struct {
		name, conf string
		want       string // in the error; "" for ready
	}{
		{"ready", fakeList, ""},
		{"no configuration", "", "no CNI network configuration in "},
		{"broken JSON", `{"cniVersion":`, "invalid JSON"},
		{"no plugins", `{"cniVersion":"1.0.0","name":"x","plugins":[]}`, "no plugins"},
		{"missing plugin", `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"ipam"},{"type":"nosuch"}]}`,
			`network "x": plugin "nosuch" not found in /usr/lib/cni`},
		{"unsupported version", `{"cniVersion":"9.9.9","name":"x","plugins":[{"type":"ipam"}]}`, `does not support config version "9.9.9"`},
		{"single plugin .conf content", `{"cniVersion":"1.0.0","name":"one","type":"ipam"}`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, _, _ := newFake(t, tc.conf)
			err := m.Ready(context.Background())
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Ready = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Ready = %v, want %q in it", err, tc.want)
			}
			var nr *NotReadyError
			if !errors.As(err, &nr) || !errdefs.IsFailedPrecondition(err) {
				t.Errorf("Ready error %T is not a *NotReadyError / failed precondition", err)
			}
			if _, err := m.Setup(context.Background(), Pod{UID: "u", NetNS: "/ns"}); !errors.As(err, &nr) {
				t.Errorf("Setup on a network that is not ready = %v, want a *NotReadyError", err)
			}
		})
	}
}

// TestReadyNotices: fixing a broken configuration, or installing a missing
// plugin, makes the network ready without a restart.
func TestReadyNotices(t *testing.T) {
	m, fe, dir := newFake(t, `{"cniVersion":"1.0.0","name":"x","plugins":[{"type":"ipam"},{"type":"later"}]}`)
	ctx := context.Background()
	if err := m.Ready(ctx); err == nil || !strings.Contains(err.Error(), `"later"`) {
		t.Fatalf("Ready = %v, want the missing plugin named", err)
	}
	fe.plugins = append(fe.plugins, "later")
	if err := m.Ready(ctx); err != nil {
		t.Fatalf("Ready after installing the plugin = %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "00-broken.conflist"), []byte("nope"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Ready(ctx); err == nil || !strings.Contains(err.Error(), "00-broken.conflist") {
		t.Fatalf("Ready with a lexically first broken file = %v", err)
	}
	os.Remove(filepath.Join(dir, "00-broken.conflist"))
	if err := m.Ready(ctx); err != nil {
		t.Fatalf("Ready after removing it = %v", err)
	}
}

func TestSetupTeardown(t *testing.T) {
	m, fe, dir := newFake(t, fakeList)
	ctx := context.Background()
	pod := Pod{UID: "uid-1", Namespace: "ns", Name: "p", NetNS: "/fake/ns",
		PortMappings: []PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"}}}
	res, err := m.Setup(ctx, pod)
	if err != nil {
		t.Fatal(err)
	}
	if res.Network != "fake" || len(res.IPs) != 1 || !res.IPs[0].Equal(net.ParseIP("10.9.0.2")) {
		t.Errorf("Setup = %+v, want the pod's address 10.9.0.2 only (not the bridge's)", res)
	}
	if got := fe.log(); !slices.Equal(got, []string{"ADD ipam uid-1", "ADD portmap uid-1"}) {
		t.Errorf("calls = %v", got)
	}
	rec, err := m.readRecord("uid-1")
	if err != nil || rec == nil {
		t.Fatalf("record = %v, %v", rec, err)
	}
	args := map[string]string{}
	for _, a := range rec.RuntimeConf.Args {
		args[a[0]] = a[1]
	}
	if args["K8S_POD_NAMESPACE"] != "ns" || args["K8S_POD_NAME"] != "p" || args["K8S_POD_INFRA_CONTAINER_ID"] != "uid-1" || args["IgnoreUnknown"] != "1" {
		t.Errorf("CNI_ARGS = %v", args)
	}
	pm, _ := json.Marshal(rec.RuntimeConf.CapabilityArgs["portMappings"])
	if string(pm) != `[{"containerPort":80,"hostPort":8080,"protocol":"tcp"}]` {
		t.Errorf("portMappings = %s", pm)
	}

	// The configuration breaks; the pod is still detached with the one it
	// was attached with.
	if err := os.WriteFile(filepath.Join(dir, "10-fake.conflist"), []byte("broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := m.Teardown(ctx, pod); err != nil {
		t.Fatal(err)
	}
	if got := fe.log(); !slices.Equal(got, []string{"DEL portmap uid-1", "DEL ipam uid-1"}) {
		t.Errorf("calls = %v", got)
	}
	if err := m.Teardown(ctx, pod); err != nil {
		t.Errorf("second Teardown = %v", err)
	}
	if got := fe.log(); len(got) != 0 {
		t.Errorf("second Teardown ran %v", got)
	}
	if uids, _ := m.Attached(); len(uids) != 0 {
		t.Errorf("records = %v", uids)
	}
}

// TestSetupFails: a failed ADD is undone with DEL, names the plugin, and
// leaves no record.
func TestSetupFails(t *testing.T) {
	m, fe, _ := newFake(t, fakeList)
	fe.failAdd = "portmap"
	_, err := m.Setup(context.Background(), Pod{UID: "uid-2", NetNS: "/fake/ns"})
	if err == nil || !strings.Contains(err.Error(), `plugin type="portmap" failed (add)`) || !strings.Contains(err.Error(), "no luck") {
		t.Fatalf("Setup = %v", err)
	}
	var nr *NotReadyError
	if errors.As(err, &nr) {
		t.Errorf("a failed ADD is not a network that is not ready: %v", err)
	}
	if got := fe.log(); !slices.Equal(got, []string{"ADD ipam uid-2", "ADD portmap uid-2", "DEL portmap uid-2", "DEL ipam uid-2"}) {
		t.Errorf("calls = %v", got)
	}
	if uids, _ := m.Attached(); len(uids) != 0 {
		t.Errorf("records = %v", uids)
	}
}

// TestCollect detaches the pods that are not live, from records and from
// libcni's cache alike.
func TestCollect(t *testing.T) {
	m, fe, _ := newFake(t, fakeList)
	ctx := context.Background()
	for _, uid := range []string{"live", "gone"} {
		if _, err := m.Setup(ctx, Pod{UID: uid, NetNS: "/fake/" + uid}); err != nil {
			t.Fatal(err)
		}
	}
	// An attachment known to libcni's cache only (no record).
	if _, err := m.Setup(ctx, Pod{UID: "cached", NetNS: "/fake/cached"}); err != nil {
		t.Fatal(err)
	}
	_ = m.removeRecord("cached")
	fe.log()
	if err := m.Collect(ctx, map[string]bool{"live": true}); err != nil {
		t.Fatal(err)
	}
	got := fe.log()
	slices.Sort(got)
	want := []string{"DEL ipam cached", "DEL ipam gone", "DEL portmap cached", "DEL portmap gone"}
	if !slices.Equal(got, want) {
		t.Errorf("calls = %v, want %v", got, want)
	}
	if uids, _ := m.Attached(); !slices.Equal(uids, []string{"live"}) {
		t.Errorf("records = %v", uids)
	}
}

func TestBadUID(t *testing.T) {
	m, _, _ := newFake(t, fakeList)
	for _, uid := range []string{"", "..", "a/b", ".hidden"} {
		if _, err := m.Setup(context.Background(), Pod{UID: uid, NetNS: "/ns"}); !errdefs.IsInvalidArgument(err) {
			t.Errorf("Setup(%q) = %v, want invalid argument", uid, err)
		}
	}
}
