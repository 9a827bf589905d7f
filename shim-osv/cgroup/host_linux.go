package cgroup

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where a host mounts its cgroup hierarchies.
const DefaultRoot = "/sys/fs/cgroup"

// Host returns the host's hierarchy: the cgroup v2 one when DefaultRoot
// is a cgroup2 mount (a unified host), else the cgroup v1 hierarchies
// mounted below DefaultRoot (a v1 host, or a hybrid one whose v2 hierarchy
// at DefaultRoot/unified holds no controllers), as containerd's cgroups
// library chooses.
func Host() (*Hierarchy, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(DefaultRoot, &st); err != nil {
		return nil, fmt.Errorf("statfs %s: %w", DefaultRoot, err)
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return &Hierarchy{Unified: DefaultRoot}, nil
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	mounts, err := ParseMountinfo(f)
	if err != nil {
		return nil, err
	}
	h := &Hierarchy{}
	for _, m := range mounts {
		if filepath.Dir(m.Dir) == DefaultRoot {
			h.V1 = append(h.V1, m)
		}
	}
	return h, nil
}

// ParseMountinfo returns the cgroup v1 mounts in a /proc/PID/mountinfo,
// each hierarchy once (the first of its mounts), with the controllers of
// its super options.
func ParseMountinfo(r io.Reader) ([]Mount, error) {
	var out []Mount
	seen := map[string]bool{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		// 36 35 0:30 / /sys/fs/cgroup/memory rw,relatime shared:13 - cgroup cgroup rw,memory
		fields := strings.Fields(s.Text())
		sep := -1
		for i, f := range fields {
			if f == "-" && i >= 6 {
				sep = i
				break
			}
		}
		if sep < 0 || len(fields) < sep+4 {
			return nil, fmt.Errorf("mountinfo: bad line %q", s.Text())
		}
		if fields[sep+1] != "cgroup" {
			continue
		}
		var ctrls []string
		for _, o := range strings.Split(fields[sep+3], ",") {
			switch {
			case o == "rw" || o == "ro" || strings.HasPrefix(o, "release_agent=") || o == "clone_children" ||
				o == "noprefix" || o == "xattr" || o == "cpuset_v2_mode" || o == "favordynmods":
			default:
				ctrls = append(ctrls, o)
			}
		}
		key := strings.Join(ctrls, ",")
		if len(ctrls) == 0 || seen[key] {
			continue
		}
		seen[key] = true
		out = append(out, Mount{Dir: unescapeMountinfo(fields[4]), Controllers: ctrls})
	}
	return out, s.Err()
}

// unescapeMountinfo undoes mountinfo's octal escapes (\040 for a space).
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }
