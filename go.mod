module github.com/tposagent/tposagent

go 1.26

require (
	github.com/creack/pty v1.1.24 // indirect
	github.com/hanwen/go-fuse/v2 v2.12.1 // indirect
	github.com/kardianos/service v1.3.0 // indirect
	github.com/pelletier/go-toml/v2 v2.4.3 // indirect
	github.com/shirou/gopsutil/v4 v4.26.10 // indirect
	go.bug.st/serial v1.8.0 // indirect
	go.etcd.io/bbolt v1.5.0 // indirect
	golang.org/x/sync v0.24.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/term v0.47.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)
