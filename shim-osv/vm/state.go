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

// StatsQMP, in the VM's directory (QEMU's working directory), is a second
// QMP monitor for readers outside the shim: the agent's stats ask it
// query-balloon. The shim holds the other one (qmp.sock); a QMP monitor
// serves one client at a time.
const StatsQMP = "qmp-stats.sock"

// BootFile, in the VM's directory, says how the guest booted, written once
// its program started (OSv echoed its command line); the agent reads it for
// its boot duration metric. It holds a Boot as JSON.
const BootFile = "boot.json"

// Boot modes.
const (
	BootDirect = "direct" // -kernel with the OSv command line in -append
	BootDisk   = "disk"   // the firmware boots the disk
)

// Boot is how a guest booted.
type Boot struct {
	// Mode is BootDirect or BootDisk; Accel is "kvm" or "tcg".
	Mode  string `json:"mode"`
	Accel string `json:"accel"`
	// Seconds is the time from the task's start to the program's.
	Seconds float64 `json:"seconds"`
}

func (b Boot) write(dir string) error {
	data, err := json.Marshal(b)
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, BootFile+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, BootFile))
}
