//go:build windows

package device

import "strings"

// portKey is how port names compare: COM3 and com3 are one port on Windows.
func portKey(name string) string { return strings.ToUpper(strings.TrimPrefix(name, `\\.\`)) }

// PortGroup returns "" on Windows: COM ports have no group to join; a
// permission error there means another program or user holds the port.
func PortGroup(port string) string { return "" }
