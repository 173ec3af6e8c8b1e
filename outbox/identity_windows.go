package outbox

import (
	"io/fs"
	"syscall"
)

// fileKey identifies a file independently of its name: the volume's serial
// number and the file's index on it.
type fileKey struct{ vol, hi, lo uint32 }

// readFileKey reads the identity of the file path names. It opens the
// path for no access and shares everything, so that it neither disturbs
// nor is refused by the agent's own open handle. Unlike os.SameFile, which
// reads the id lazily and reports "different" when that read fails, a
// failure here is an error: the caller cannot tell, and says nothing.
func readFileKey(path string) (fileKey, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return fileKey{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	h, err := syscall.CreateFile(p, 0,
		syscall.FILE_SHARE_READ|syscall.FILE_SHARE_WRITE|syscall.FILE_SHARE_DELETE,
		nil, syscall.OPEN_EXISTING, syscall.FILE_FLAG_BACKUP_SEMANTICS, 0)
	if err != nil {
		return fileKey{}, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	defer syscall.CloseHandle(h)
	var d syscall.ByHandleFileInformation
	if err := syscall.GetFileInformationByHandle(h, &d); err != nil {
		return fileKey{}, &fs.PathError{Op: "read file id", Path: path, Err: err}
	}
	return fileKey{vol: d.VolumeSerialNumber, hi: d.FileIndexHigh, lo: d.FileIndexLow}, nil
}
