package outbox

import (
	"io/fs"
	"syscall"
	"unsafe"
)

// fileKey on Windows says only that a file is at the path.
//
// Windows itself keeps the open outbox from vanishing: the agent's handle
// does not share delete access, so deleting the file or renaming another
// over it is refused while the agent runs, and the check here is only a
// backstop for a file that is gone. It reads the path's attributes
// without opening the file. Two better keys failed under wine, which CI
// runs the Windows build on: the file index needs a second handle on the
// mapped file, and each such open cost the wine server a file descriptor
// it never gave back (2,000 opens, 2,000 descriptors, until a fleet of
// queues ran out of them); the creation time is derived there from the
// Unix ctime, which every write changes.
type fileKey struct{}

// readFileKey reads the identity of the file path names. A failure is an
// error (the caller cannot tell, and says nothing), except that a missing
// file is fs.ErrNotExist.
func readFileKey(path string) (fileKey, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return fileKey{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	var d syscall.Win32FileAttributeData
	if err := syscall.GetFileAttributesEx(p, syscall.GetFileExInfoStandard, (*byte)(unsafe.Pointer(&d))); err != nil {
		return fileKey{}, &fs.PathError{Op: "stat", Path: path, Err: err}
	}
	return fileKey{}, nil
}
