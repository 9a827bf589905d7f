package stdio

import "syscall"

// detached puts the helper in a session of its own, out of the agent's
// process group and controlling terminal.
func detached() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setsid: true} }
