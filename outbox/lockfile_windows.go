package outbox

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// tryLockFile opens path with no sharing at all: while this handle is
// open, every other open of the file fails with a sharing violation (busy).
func tryLockFile(path string) (f *os.File, busy bool, err error) {
	p, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, false, err
	}
	h, err := windows.CreateFile(p, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil,
		windows.OPEN_ALWAYS, windows.FILE_ATTRIBUTE_NORMAL, 0)
	if err != nil {
		return nil, errors.Is(err, windows.ERROR_SHARING_VIOLATION), err
	}
	return os.NewFile(uintptr(h), path), false, nil
}
