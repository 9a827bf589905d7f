package agent

import (
	"fmt"
	"net"
	"strings"

	"golang.org/x/sys/unix"
)

// socketPeer returns the pid of the process serving the unix socket at
// path (containerd's, for the runtime's system container), from the
// connection's peer credentials.
func socketPeer(path string) (int, error) {
	conn, err := net.Dial("unix", strings.TrimPrefix(path, "unix://"))
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	raw, err := conn.(*net.UnixConn).SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) { cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED) }); err != nil {
		return 0, err
	}
	if cerr != nil {
		return 0, fmt.Errorf("peer of %s: %w", path, cerr)
	}
	return int(cred.Pid), nil
}
