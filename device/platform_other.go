//go:build !windows

package device

import (
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// portKey is how port names compare: exactly, on Unix.
func portKey(name string) string { return name }

// PortGroup names the group that owns the device file of port, the group a
// user must join to open it (dialout on Debian/Ubuntu, uucp on Arch/SUSE).
// It falls back to "dialout" when the port cannot be inspected.
func PortGroup(port string) string {
	fi, err := os.Stat(port)
	if err != nil {
		return "dialout"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "dialout"
	}
	g, err := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10))
	if err != nil || g.Name == "root" {
		return "dialout"
	}
	return g.Name
}
