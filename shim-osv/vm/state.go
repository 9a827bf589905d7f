package vm

import (
	"encoding/json"
	"os"
	"path/filepath"
)

// stateFile, in the VM's directory, records what the VM holds on the host,
// so that Cleanup can remove it after the shim died.
const stateFile = "state.json"

// state is what stateFile holds.
type state struct {
	// Pids of QEMU and virtiofsd, as started.
	Pids        []int  `json:"pids,omitempty"`
	NetNS       string `json:"netns,omitempty"`
	Interface   string `json:"interface,omitempty"`
	Tap         string `json:"tap,omitempty"`
	CgroupsPath string `json:"cgroupsPath,omitempty"`
}

func (s state) write(dir string) error {
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, stateFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, stateFile))
}

func readState(dir string) (state, error) {
	var s state
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		return s, err
	}
	return s, json.Unmarshal(b, &s)
}
