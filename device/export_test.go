package device

import (
	"context"
	"time"
)

var (
	OpenError = openError
	ListPorts = listPorts
)

// StalledWrite opens port and writes n bytes with deadline d through the
// watcher, returning how long the call took.
func StalledWrite(port string, n int, d time.Duration) (time.Duration, error) {
	c, err := dial(context.Background(), port, DefaultBaud, time.Second, nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	start := time.Now()
	err = c.write(make([]byte, n), start.Add(d))
	return time.Since(start), err
}
