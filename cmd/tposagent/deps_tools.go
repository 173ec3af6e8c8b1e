//go:build tools

// This file pins the modules the packages under construction will use, so
// that go.mod and go.sum stay complete while they are written. Remove it
// once every module is imported by real code.
package main

import (
	_ "github.com/creack/pty"
	_ "github.com/hanwen/go-fuse/v2/fs"
	_ "github.com/kardianos/service"
	_ "github.com/pelletier/go-toml/v2"
	_ "github.com/shirou/gopsutil/v4/host"
	_ "go.bug.st/serial"
	_ "go.bug.st/serial/enumerator"
	_ "go.etcd.io/bbolt"
	_ "golang.org/x/sync/errgroup"
	_ "golang.org/x/text/encoding/charmap"
)
