package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"runtime"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/config"
)

// cmdDevice lists serial ports or reads the fiscal identity now. It talks to
// the hardware directly, with or without the service running.
func cmdDevice(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageErrorf("device: say what to do: device ports | device probe [--port P]")
	}
	switch args[0] {
	case "ports":
		return cmdDevicePorts(e, args[1:])
	case "probe":
		return cmdDeviceProbe(ctx, e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage: tposagent device ports [--json]\n       tposagent device probe [--port P] [--baud B] [--timeout D] [--tries N] [--json]\n")
		return nil
	}
	return usageErrorf("device: unknown subcommand %q (ports, probe)", args[0])
}

func cmdDevicePorts(e *env, args []string) error {
	fs := newFlagSet(e, "device ports", "device ports [--json]",
		"  tposagent device ports\n  tposagent device ports --json\n")
	asJSON := fs.Bool("json", false, "print the ports as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("device ports: unexpected argument %q", fs.Arg(0))
	}
	ports, err := device.Ports()
	if err != nil {
		return fmt.Errorf("device ports: %w", err)
	}
	if *asJSON {
		if ports == nil {
			ports = []device.PortInfo{}
		}
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(ports)
	}
	if len(ports) == 0 {
		fmt.Fprintln(e.stderr, "no serial ports found (is the ÖKC's USB cable plugged in and its driver installed?)")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PORT\tUSB VID:PID\tSERIAL\tPRODUCT")
	for _, p := range ports {
		usb := "-"
		if p.IsUSB {
			usb = p.VID + ":" + p.PID
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, usb, dash(p.SerialNumber), dash(p.Product))
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cmdDeviceProbe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "device probe", "device probe [--port P] [--baud B] [--timeout D] [--tries N] [--json]",
		"  tposagent device probe                     # try every port, USB first\n"+
			"  tposagent device probe --port COM3\n"+
			"  tposagent device probe --port /dev/ttyUSB0 --json\n")
	port := fs.String("port", device.PortAuto, `serial port, or "auto" to try every port`)
	baud := fs.Int("baud", device.DefaultBaud, "line speed (8N1)")
	timeout := fs.Duration("timeout", device.DefaultTimeout, "answer timeout per try")
	tries := fs.Int("tries", device.DefaultTries, "tries per port (auto: the first pass asks each port once)")
	asJSON := fs.Bool("json", false, "print the identity as JSON")
	addConfigFlag(fs, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("device probe: unexpected argument %q", fs.Arg(0))
	}
	// The config's port and line settings are the defaults, when there is
	// a config; flags win.
	var exclude []string
	if cfg, err := config.Read(e.configPath); err == nil {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["port"] && !strings.EqualFold(cfg.Device.Port, device.PortNone) && cfg.Device.Port != "" {
			*port = cfg.Device.Port
		}
		if !set["baud"] && cfg.Device.Baud > 0 {
			*baud = cfg.Device.Baud
		}
		exclude = cfg.Device.Exclude
	}
	if *baud <= 0 || *timeout <= 0 || *tries <= 0 {
		return usageErrorf("device probe: --baud, --timeout and --tries must be positive")
	}
	if strings.EqualFold(*port, device.PortNone) {
		return usageErrorf("device probe: --port none reads no device; give a port or auto")
	}
	r := device.NewReader(device.Config{Port: *port, Baud: *baud, Timeout: *timeout, Tries: *tries, Exclude: exclude})
	id, err := r.Read(ctx)
	if err != nil {
		return probeError(*port, *baud, err)
	}
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(id)
	}
	fmt.Fprintln(e.stdout, id.FiscalSerial)
	fmt.Fprintf(e.stderr, "port %s, ECR serial %s, %s %s, read %s\n",
		id.Port, dash(id.ECRSerial), dash(id.Brand), dash(id.Model), id.ReadAt.Format(time.RFC3339))
	return nil
}

// probeError turns a failed read into one line a person can act on.
func probeError(port string, baud int, err error) error {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("device probe: interrupted: %w", err)
	case errors.Is(err, device.ErrPermission):
		if g := device.PortGroup(port); g != "" && runtime.GOOS != "windows" {
			return fmt.Errorf("%v: add the user to the %q group (sudo usermod -aG %s $USER), then log in again", err, g, g)
		}
		return fmt.Errorf("%v: another program or user holds the port, or run as administrator", err)
	case errors.Is(err, device.ErrBusy):
		return fmt.Errorf("%v: the POS program probably holds the port; the agent would use its cached identity (close the POS program to probe now)", err)
	case errors.Is(err, device.ErrTimeout):
		return fmt.Errorf("%v: check the cable, that the ÖKC is on, and the baud rate (now %d)", err, baud)
	case errors.Is(err, device.ErrDisconnected):
		return fmt.Errorf("%v: the port went away during the read; check the USB cable", err)
	case errors.Is(err, device.ErrResultCode):
		return fmt.Errorf("%v: the ÖKC refused the ECHO request; check its screen for an error and try again", err)
	case errors.Is(err, device.ErrEchoed):
		return fmt.Errorf("%v: the port returns what we send (loopback plug or modem?); this is not the ÖKC's port", err)
	case errors.Is(err, device.ErrBadFrame):
		return fmt.Errorf("%v: something answered, but not like an ÖKC; wrong port or wrong baud rate (now %d)?", err, baud)
	case errors.Is(err, device.ErrNoDevice) && strings.EqualFold(port, device.PortAuto):
		return fmt.Errorf("%v: check that the ÖKC is on and connected; see tposagent device ports", err)
	case errors.Is(err, device.ErrNoDevice):
		return fmt.Errorf("%v: no such serial port here; see tposagent device ports", err)
	}
	return fmt.Errorf("device probe: %w", err)
}
