//go:build linux

// Command tposfakes runs, inside the container of the systemd proof, what
// a till talks to: the fake TPOSL and Ödüyo servers and a simulated fiscal
// device on a pseudo-terminal. The container has only loopback, so the
// servers listen on fixed loopback ports that the agent's config names,
// and a systemd unit starts them on every boot. A control endpoint lets
// the test take Ödüyo down and read what was delivered; the "down" state
// is kept in the state directory so that it survives a reboot.
//
//	tposfakes serve --state DIR      the servers (what the unit runs)
//	tposfakes ctl METHOD PATH        one request to the control endpoint, body on stdout
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/tposagent/tposagent/agent/oduyo/oduyotest"
	"github.com/tposagent/tposagent/agent/tposl/tposltest"
	"github.com/tposagent/tposagent/device/devicetest"
)

// The fixed loopback addresses inside the container.
const (
	TPOSLAddr   = "127.0.0.1:18080"
	OduyoAddr   = "127.0.0.1:18081"
	ControlAddr = "127.0.0.1:18082"
	// DevicePort is a symlink to the simulator's pseudo-terminal, which
	// is group dialout, mode 0660, like a USB serial adapter.
	DevicePort = "/dev/ttyFAKE0"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: tposfakes serve --state DIR | tposfakes ctl METHOD PATH")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		if len(os.Args) != 4 || os.Args[2] != "--state" {
			err = errors.New("usage: tposfakes serve --state DIR")
			break
		}
		err = serve(os.Args[3])
	case "ctl":
		if len(os.Args) != 4 {
			err = errors.New("usage: tposfakes ctl METHOD PATH")
			break
		}
		err = ctl(os.Args[2], os.Args[3])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tposfakes: %v\n", err)
		os.Exit(1)
	}
}

func ctl(method, path string) error {
	req, err := http.NewRequest(method, "http://"+ControlAddr+path, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

// listener serves h on a fixed address and can be taken down (connection
// refused) and brought back.
type listener struct {
	addr string
	h    http.Handler
	mu   sync.Mutex
	srv  *http.Server
}

func (l *listener) up() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		return nil
	}
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ {
		if ln, err = net.Listen("tcp", l.addr); err == nil {
			break
		}
		time.Sleep(50 * time.Millisecond) // the kernel may hold the port briefly
	}
	if err != nil {
		return fmt.Errorf("listen %s: %w", l.addr, err)
	}
	l.srv = &http.Server{Handler: l.h, ReadHeaderTimeout: 10 * time.Second}
	go func(s *http.Server) { _ = s.Serve(ln) }(l.srv)
	return nil
}

func (l *listener) down() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.srv != nil {
		_ = l.srv.Close()
		l.srv = nil
	}
}

func serve(state string) error {
	if err := os.MkdirAll(state, 0o755); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tp := tposltest.NewServer()
	defer tp.Close()
	od := oduyotest.NewServer()
	defer od.Close()
	tpL := &listener{addr: TPOSLAddr, h: tp}
	odL := &listener{addr: OduyoAddr, h: od}
	if err := tpL.up(); err != nil {
		return err
	}
	downFlag := filepath.Join(state, "oduyo-down")
	if _, err := os.Stat(downFlag); err != nil {
		if err := odL.up(); err != nil {
			return err
		}
	}

	sim, err := devicetest.Start(devicetest.Options{})
	if err != nil {
		return err
	}
	defer sim.Close()
	if err := exposePort(sim.Port()); err != nil {
		return err
	}
	log.Info("tposfakes serving", "tposl", TPOSLAddr, "oduyo", OduyoAddr, "device", DevicePort, "pty", sim.Port())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /delivered", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(od.Delivered())
	})
	mux.HandleFunc("GET /registrations", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, len(tp.Requests()))
	})
	mux.HandleFunc("GET /device-requests", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, sim.Requests())
	})
	mux.HandleFunc("POST /oduyo/down", func(w http.ResponseWriter, r *http.Request) {
		if err := os.WriteFile(downFlag, nil, 0o644); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		odL.down()
		fmt.Fprintln(w, "down")
	})
	mux.HandleFunc("POST /oduyo/up", func(w http.ResponseWriter, r *http.Request) {
		if err := os.Remove(downFlag); err != nil && !errors.Is(err, os.ErrNotExist) {
			http.Error(w, err.Error(), 500)
			return
		}
		if err := odL.up(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintln(w, "up")
	})
	ctlL := &listener{addr: ControlAddr, h: mux}
	if err := ctlL.up(); err != nil {
		return err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	ctlL.down()
	odL.down()
	tpL.down()
	return nil
}

// exposePort makes the pseudo-terminal look like a serial adapter: group
// dialout, mode 0660, reachable as DevicePort.
func exposePort(pty string) error {
	g, err := user.LookupGroup("dialout")
	if err != nil {
		return err
	}
	gid, err := strconv.Atoi(g.Gid)
	if err != nil {
		return err
	}
	if err := os.Chown(pty, 0, gid); err != nil {
		return err
	}
	if err := os.Chmod(pty, 0o660); err != nil {
		return err
	}
	_ = os.Remove(DevicePort)
	return os.Symlink(pty, DevicePort)
}
