package device

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"go.bug.st/serial"
	"go.bug.st/serial/enumerator"
)

// PortInfo describes one serial port. USB fields are empty for other ports
// (and Product is often empty: the enumeration is passive, no USB probing).
type PortInfo struct {
	Name         string `json:"name"`
	IsUSB        bool   `json:"is_usb"`
	VID          string `json:"vid,omitempty"`
	PID          string `json:"pid,omitempty"`
	SerialNumber string `json:"serial_number,omitempty"`
	Product      string `json:"product,omitempty"`
}

// Ports lists the serial ports of this machine, USB ones first, then by name
// (COM2 before COM10). When the detailed enumeration fails or finds nothing
// (it reads the registry/SetupAPI on Windows and sysfs on Linux, which some
// drivers and wine do not fill) it falls back to the plain list of names.
func Ports() ([]PortInfo, error) {
	return listPorts(func() ([]*enumerator.PortDetails, error) { return enumerator.GetDetailedPortsList() }, serial.GetPortsList)
}

func listPorts(detailed func() ([]*enumerator.PortDetails, error), plain func() ([]string, error)) ([]PortInfo, error) {
	var out []PortInfo
	details, derr := detailed()
	for _, d := range details {
		if d != nil && d.Name != "" {
			out = append(out, PortInfo{Name: d.Name, IsUSB: d.IsUSB, VID: d.VID, PID: d.PID, SerialNumber: d.SerialNumber, Product: d.Product})
		}
	}
	if len(out) == 0 {
		names, err := plain()
		if err != nil {
			if derr != nil {
				return nil, fmt.Errorf("list serial ports: %w (detailed: %v)", err, derr)
			}
			return nil, fmt.Errorf("list serial ports: %w", err)
		}
		for _, n := range names {
			out = append(out, PortInfo{Name: n})
		}
	}
	SortPorts(out)
	return out, nil
}

// SortPorts orders ports as Ports returns them: USB first, then by name
// with numbers compared as numbers.
func SortPorts(ps []PortInfo) {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].IsUSB != ps[j].IsUSB {
			return ps[i].IsUSB
		}
		return nameLess(ps[i].Name, ps[j].Name)
	})
}

// nameLess compares names split as prefix + trailing number.
func nameLess(a, b string) bool {
	pa, na := splitNum(a)
	pb, nb := splitNum(b)
	if pa != pb {
		return pa < pb
	}
	if na != nb {
		return na < nb
	}
	return a < b
}

func splitNum(s string) (string, int) {
	i := len(s)
	for i > 0 && s[i-1] >= '0' && s[i-1] <= '9' {
		i--
	}
	n, err := strconv.Atoi(s[i:])
	if err != nil || i == len(s) {
		return s, -1
	}
	return strings.ToUpper(s[:i]), n
}

// CheckPort checks a port that someone else names (the POS's report of
// where it talks to its ÖKC): a serial port — COM1 … COM256 (also as
// \\.\COM3) or an absolute path under /dev — or tcp://host:port. "auto"
// and "none" name no port. The error says what is wrong, for the caller
// to show.
func CheckPort(name string) error {
	switch n := strings.TrimSpace(name); {
	case n == "":
		return fmt.Errorf("is empty")
	case strings.EqualFold(n, PortAuto), strings.EqualFold(n, PortNone):
		return fmt.Errorf("%q names no port: give the port the POS talks to its ÖKC on (COM3, /dev/ttyUSB0, tcp://192.168.1.50:4444)", n)
	case strings.HasPrefix(strings.ToLower(n), TCPPrefix):
		host, port, err := net.SplitHostPort(n[len(TCPPrefix):])
		if err != nil || host == "" {
			return fmt.Errorf("%q: want tcp://host:port, e.g. tcp://192.168.1.50:4444", n)
		}
		if p, err := strconv.Atoi(port); err != nil || p < 1 || p > 65535 {
			return fmt.Errorf("%q: the TCP port must be 1..65535", n)
		}
		return nil
	case strings.HasPrefix(n, "/dev/") && len(n) > len("/dev/") && !strings.Contains(n, "/../") && !strings.HasSuffix(n, "/.."):
		return nil
	default:
		com := strings.ToUpper(strings.TrimPrefix(n, `\\.\`))
		if rest, ok := strings.CutPrefix(com, "COM"); ok {
			if k, err := strconv.Atoi(rest); err == nil && k >= 1 && k <= 256 && rest[0] != '0' {
				return nil
			}
		}
		return fmt.Errorf("%q is no port name: want COM3, /dev/ttyUSB0 or tcp://host:port", n)
	}
}
