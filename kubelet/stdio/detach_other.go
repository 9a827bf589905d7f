//go:build !linux

package stdio

import "syscall"

func detached() *syscall.SysProcAttr { return nil }
