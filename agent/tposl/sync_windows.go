//go:build windows

package tposl

// syncDir is a no-op on Windows: NTFS journals the rename (MoveFileEx with
// MOVEFILE_REPLACE_EXISTING, which os.Rename uses) and directories cannot
// be opened for FlushFileBuffers without backup privileges.
func syncDir(string) error { return nil }
