//go:build windows

package installer

import (
	"fmt"

	"golang.org/x/sys/windows"
)

const isWindows = true

// Protected DACLs: only SYSTEM and the Administrators group, full control,
// nothing inherited from the parent (ProgramData is readable by Users).
const (
	fileSDDL = "D:P(A;;FA;;;SY)(A;;FA;;;BA)"
	dirSDDL  = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)"
)

// securePath gives path an ACL that lets only Administrators and SYSTEM in.
func securePath(path string, dir bool) error {
	sddl := fileSDDL
	if dir {
		sddl = dirSDDL
	}
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("security descriptor: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("security descriptor dacl: %w", err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION,
		nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set acl on %s: %w", path, err)
	}
	return nil
}
