//go:build !windows

package main

// systemLanguage: outside Windows the locale variables are the OS's say.
func systemLanguage() string { return "" }
