//go:build windows

package perm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// ownerOnly: every allow entry of the effective DACL (its own entries and
// those inherited from the parent) names SYSTEM, the Administrators or the
// owner.
func ownerOnly(path string) error {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("check acl of %s: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("check acl of %s: %w", path, err)
	}
	if dacl == nil {
		return fmt.Errorf("check acl of %s: no DACL (everyone has full access): %w", path, ErrOpen)
	}
	owner, _, _ := sd.Owner()
	for i := uint32(0); i < uint32(dacl.AceCount); i++ {
		var ace *windows.ACCESS_ALLOWED_ACE
		if err := windows.GetAce(dacl, i, &ace); err != nil {
			return fmt.Errorf("check acl of %s: entry %d: %w", path, i, err)
		}
		if ace.Header.AceType != windows.ACCESS_ALLOWED_ACE_TYPE {
			continue // deny entries close, they do not open
		}
		sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
		switch {
		case sid.IsWellKnown(windows.WinLocalSystemSid),
			sid.IsWellKnown(windows.WinBuiltinAdministratorsSid),
			owner != nil && windows.EqualSid(sid, owner):
		default:
			return fmt.Errorf("check acl of %s: %s is allowed in: %w", path, name(sid), ErrOpen)
		}
	}
	return nil
}

// name is the account name of sid, or its string form.
func name(sid *windows.SID) string {
	if acc, dom, _, err := sid.LookupAccount(""); err == nil {
		if dom != "" {
			return dom + `\` + acc
		}
		return acc
	}
	return sid.String()
}

func restrictDir(dir string) error {
	return setSDDL(dir, "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)")
}

// setSDDL replaces the DACL of path with the one in sddl.
func setSDDL(path, sddl string) error {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return fmt.Errorf("set acl of %s: %w", path, err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("set acl of %s: %w", path, err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, dacl, nil)
	if err != nil {
		return fmt.Errorf("set acl of %s: %w", path, err)
	}
	return nil
}
