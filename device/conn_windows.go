//go:build windows

package device

import (
	"errors"
	"reflect"

	"go.bug.st/serial"
	"golang.org/x/sys/windows"
)

// cancelIO cancels every pending overlapped read and write on p's handle
// (CancelIoEx), so a GetOverlappedResult that the driver never completes
// returns ERROR_OPERATION_ABORTED. go.bug.st/serial keeps the handle in an
// unexported field; if a later version renames it this does nothing and
// closing the handle is the only cancel.
func cancelIO(p serial.Port) {
	v := reflect.ValueOf(p)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	h := v.Elem().FieldByName("handle")
	if !h.IsValid() || (h.Kind() != reflect.Uintptr && h.Kind() != reflect.Uint64) {
		return
	}
	if handle := windows.Handle(h.Uint()); handle != 0 && handle != windows.InvalidHandle {
		_ = windows.CancelIoEx(handle, nil)
	}
}

func isRefused(err error) bool { return errors.Is(err, windows.WSAECONNREFUSED) }

// isSharingViolation: another handle holds the COM port. Windows answers a
// second CreateFile on a COM port with ERROR_ACCESS_DENIED (go.bug.st/serial
// maps that to PortBusy); wine answers ERROR_SHARING_VIOLATION. Both mean
// another program holds it.
func isSharingViolation(err error) bool {
	return errors.Is(err, windows.ERROR_SHARING_VIOLATION) || errors.Is(err, windows.ERROR_ACCESS_DENIED)
}
