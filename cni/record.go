package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// record is what a pod was attached with, written before its ADD and
// removed after its DEL succeeded: the network configuration list and the
// runtime arguments, so DEL and CHECK repeat them exactly.
type record struct {
	Config      json.RawMessage `json:"config"`
	RuntimeConf RuntimeConf     `json:"runtimeConf"`
}

// RuntimeConf is the serialisable part of libcni.RuntimeConf.
type RuntimeConf struct {
	NetNS          string         `json:"netns,omitempty"`
	IfName         string         `json:"ifName"`
	Args           [][2]string    `json:"args,omitempty"`
	CapabilityArgs map[string]any `json:"capabilityArgs,omitempty"`
}

// rt returns the libcni runtime configuration of the record's pod.
func (r *record) rt() *libcni.RuntimeConf {
	rc := r.RuntimeConf
	id := ""
	for _, a := range rc.Args {
		if a[0] == "K8S_POD_INFRA_CONTAINER_ID" {
			id = a[1]
		}
	}
	if rc.IfName == "" {
		rc.IfName = IfName
	}
	return &libcni.RuntimeConf{ContainerID: id, NetNS: rc.NetNS, IfName: rc.IfName, Args: rc.Args, CapabilityArgs: rc.CapabilityArgs}
}

func (m *Manager) recordDir() string { return filepath.Join(m.cfg.StateDir, "pods") }

func (m *Manager) recordPath(uid string) string {
	return filepath.Join(m.recordDir(), uid+".json")
}

// readRecord returns pod uid's record, or nil when it has none.
func (m *Manager) readRecord(uid string) (*record, error) {
	b, err := os.ReadFile(m.recordPath(uid))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("pod %s: read CNI attachment record: %w", uid, err)
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		// A torn write (the record is written atomically, so only by
		// hand): nothing to repeat; the ADD it preceded never ran.
		_ = os.Remove(m.recordPath(uid))
		return nil, nil
	}
	if r.RuntimeConf.Args == nil {
		r.RuntimeConf.Args = [][2]string{{"K8S_POD_INFRA_CONTAINER_ID", uid}}
	}
	return &r, nil
}

func (m *Manager) writeRecord(uid string, r *record) error {
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(m.recordDir(), 0o700); err != nil {
		return fmt.Errorf("CNI state: %w", err)
	}
	return writeFileAtomic(m.recordPath(uid), b, 0o600)
}

func (m *Manager) removeRecord(uid string) error {
	if err := os.Remove(m.recordPath(uid)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// recordUIDs lists the pods that have a record.
func (m *Manager) recordUIDs() ([]string, error) {
	ents, err := os.ReadDir(m.recordDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if uid, ok := strings.CutSuffix(e.Name(), ".json"); ok && !e.IsDir() && !strings.HasPrefix(uid, ".") {
			out = append(out, uid)
		}
	}
	return out, nil
}

// checkUID refuses a pod UID that cannot name a file.
func checkUID(uid string) error {
	if uid == "" || uid == "." || uid == ".." || strings.ContainsAny(uid, "/\x00") || strings.HasPrefix(uid, ".") {
		return fmt.Errorf("pod UID %q: %w", uid, errdefs.ErrInvalidArgument)
	}
	return nil
}
