//go:build windows

package perm

// The SDDL the installer gives the config file, and one that lets Users read.
func restrict(path string) error { return setSDDL(path, "D:P(A;;FA;;;SY)(A;;FA;;;BA)") }
func widen(path string) error    { return setSDDL(path, "D:P(A;;FA;;;SY)(A;;FA;;;BA)(A;;FR;;;BU)") }
