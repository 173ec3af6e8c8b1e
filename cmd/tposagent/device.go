package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tposagent/tposagent/agent"
	"github.com/tposagent/tposagent/agent/localapi"
	"github.com/tposagent/tposagent/device"
	"github.com/tposagent/tposagent/internal/config"
)

// cmdDevice lists serial ports, reads the fiscal identity now (talking to
// the hardware directly, with or without the service running), or reports
// the identity to the running agent as the POS would.
func cmdDevice(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usageErrorf("device: say what to do: device ports | device probe [--port P] | device set --fiscal-serial ID")
	}
	switch args[0] {
	case "ports":
		return cmdDevicePorts(e, args[1:])
	case "probe":
		return cmdDeviceProbe(ctx, e, args[1:])
	case "set":
		return cmdDeviceSet(ctx, e, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(e.stdout, "Usage: tposagent device ports [--json]\n"+
			"       tposagent device probe [--port P] [--protocol auto|crc16-arc|crc16-ccitt|t300] [--fiscal-serial ID] [--trace FILE] [--json]\n"+
			"       tposagent device set --fiscal-serial ID [--brand B] [--model M] [--ecr-serial S] [--port P] [--json]\n")
		return nil
	}
	return usageErrorf("device: unknown subcommand %q (ports, probe, set)", args[0])
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
	fs := newFlagSet(e, "device probe", "device probe [--port P] [--protocol D] [--fiscal-serial ID] [--scan usb|all] [--trace FILE] [--json]",
		"  tposagent device probe                     # the port the POS reported, else scan the USB serial ports\n"+
			"  tposagent device probe --port COM3 --trace okc.trace\n"+
			"  tposagent device probe --port tcp://192.168.1.50:4444\n"+
			"  tposagent device probe --port /dev/ttyUSB0 --fiscal-serial JI20012345 --json\n")
	port := fs.String("port", device.PortAuto, `serial port (COM3, /dev/ttyUSB0), tcp://host:port, or "auto": the port the POS reported, else the USB serial ports`)
	scan := fs.String("scan", device.ScanUSB, `which ports "auto" scans: usb, or all (built-in UARTs too, where printers and pole displays live)`)
	protocol := fs.String("protocol", device.ProtocolAuto, "GMP-3 dialect: auto, crc16-arc, crc16-ccitt or t300")
	fiscal := fs.String("fiscal-serial", "", "the fiscal id to put in the request header (some devices answer only to their own); default: the config's, else the POS's report or the last good read in the data dir")
	tracePath := fs.String("trace", "", "write every byte sent and received to FILE (one hex line each) for a support ticket or a replay test")
	baud := fs.Int("baud", device.DefaultBaud, "line speed (8N1)")
	ack := fs.Duration("ack-timeout", device.DefaultAckTimeout, "wait for the ACK, and then for the answer, per try")
	tries := fs.Int("tries", device.DefaultTries, "sends per dialect (auto: a port that stays silent is asked once per dialect; one that answers gets every try)")
	asJSON := fs.Bool("json", false, "print the identity as JSON")
	addConfigFlag(fs, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("device probe: unexpected argument %q", fs.Arg(0))
	}
	// The config's device settings are the defaults, when there is a
	// config; flags win.
	var exclude []string
	var via string // the port the POS reported
	budget := device.DefaultProbeBudget
	hold, gap := device.DefaultHoldMax, device.DefaultReopenGap
	if cfg, err := config.Read(e.configPath); err == nil {
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if !set["port"] && !strings.EqualFold(cfg.Device.Port, device.PortNone) && cfg.Device.Port != "" {
			*port = cfg.Device.Port
		}
		if !set["protocol"] && cfg.Device.Protocol != "" {
			*protocol = cfg.Device.Protocol
		}
		if !set["fiscal-serial"] {
			*fiscal = cfg.Device.FiscalSerial
			if *fiscal == "" {
				// The best id the agent knows, read without touching its files.
				if known, from := agent.KnownFiscalSerial(cfg.DataDir); known != "" {
					*fiscal = known
					fmt.Fprintf(e.stderr, "header id %s (from %s in %s)\n", known, from, cfg.DataDir)
				}
			}
		}
		if !set["baud"] && cfg.Device.Baud > 0 {
			*baud = cfg.Device.Baud
		}
		if !set["ack-timeout"] && cfg.Device.AckTimeout.Duration > 0 {
			*ack = cfg.Device.AckTimeout.Duration
		}
		if !set["tries"] && cfg.Device.Tries > 0 {
			*tries = cfg.Device.Tries
		}
		if cfg.Device.ProbeBudget.Duration > 0 {
			budget = cfg.Device.ProbeBudget.Duration
		}
		if !set["scan"] && cfg.Device.Scan != "" {
			*scan = cfg.Device.Scan
		}
		hold, gap = cfg.Device.HoldMax.Duration, cfg.Device.ReopenGap.Duration
		exclude = cfg.Device.Exclude
		if rep, err := agent.POSReport(cfg.DataDir); err == nil && rep.Port != "" && strings.EqualFold(*port, device.PortAuto) {
			via = rep.Port
			fmt.Fprintf(e.stderr, "asking %s, the port the POS reported %s\n", via, rep.ReadAt.Format(time.RFC3339))
		}
	}
	if *baud <= 0 || *ack <= 0 || *tries <= 0 {
		return usageErrorf("device probe: --baud, --ack-timeout and --tries must be positive")
	}
	if strings.EqualFold(*port, device.PortNone) {
		return usageErrorf("device probe: --port none reads no device; give a port or auto")
	}
	cfg := device.Config{Port: *port, Protocol: *protocol, Baud: *baud, AckTimeout: *ack, Tries: *tries, ProbeBudget: budget,
		HoldMax: hold, ReopenGap: gap, Scan: *scan, Exclude: exclude}
	if *tracePath != "" {
		f, err := os.OpenFile(*tracePath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("device probe: trace file: %w", err)
		}
		defer f.Close()
		fmt.Fprintf(f, "# tposagent %s device probe, %s %s, started %s\n", agent.Version, runtime.GOOS, runtime.GOARCH, time.Now().Format(time.RFC3339))
		cfg.Trace = f
	}
	r, err := device.NewReader(cfg)
	if err != nil {
		return usageErrorf("device probe: %v", err)
	}
	id, err := r.ReadVia(ctx, strings.TrimSpace(*fiscal), via)
	if *tracePath != "" {
		fmt.Fprintf(e.stderr, "trace written to %s\n", *tracePath)
	}
	if err != nil {
		return probeError(*port, *baud, err)
	}
	if *asJSON {
		return printJSON(e.stdout, id)
	}
	fmt.Fprintln(e.stdout, id.FiscalSerial)
	fmt.Fprintf(e.stderr, "port %s, protocol %s, read %s (the fiscal id is the device's answer header; brand, model and ECR serial come from the POS: tposagent device set)\n",
		id.Port, id.Protocol, id.ReadAt.Format(time.RFC3339))
	return nil
}

// cmdDeviceSet reports the identity to the running agent as the POS would
// (PUT /v1/device).
func cmdDeviceSet(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "device set", "device set --fiscal-serial ID [--brand B] [--model M] [--ecr-serial S] [--port P] [--json]",
		"  tposagent device set --fiscal-serial JI20012345 --port COM3\n"+
			"  tposagent device set --fiscal-serial FT40050248 --brand HUGIN --model T300 --ecr-serial FT40050248\n")
	var rep localapi.DeviceReport
	fs.StringVar(&rep.FiscalSerial, "fiscal-serial", "", "the fiscal id of the paired ÖKC (required), e.g. JI20012345")
	fs.StringVar(&rep.Brand, "brand", "", "the ÖKC's brand, e.g. HUGIN")
	fs.StringVar(&rep.Model, "model", "", "the ÖKC's model, e.g. T300")
	fs.StringVar(&rep.ECRSerial, "ecr-serial", "", "the ÖKC's ECR serial (POS_SERI_NO when store.pos_serial is empty)")
	fs.StringVar(&rep.Port, "port", "", "where the POS talks to the ÖKC (COM3, /dev/ttyUSB0, tcp://host:port): while the report is fresh the agent leaves the device alone, later it asks only this port")
	asJSON := fs.Bool("json", false, "print the resulting identity as JSON")
	addConfigFlag(fs, e)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErrorf("device set: unexpected argument %q", fs.Arg(0))
	}
	if strings.TrimSpace(rep.FiscalSerial) == "" {
		return usageErrorf("device set: --fiscal-serial is required")
	}
	c, err := apiClient(e)
	if err != nil {
		return err
	}
	d, err := c.ReportDevice(ctx, rep)
	if err != nil {
		return fmt.Errorf("device set: %w", err)
	}
	forTerminal(&d, cliSecrets(e)) // the device's error and other sources' values are not ours
	if *asJSON {
		return printJSON(e.stdout, d)
	}
	fmt.Fprintf(e.stdout, "%s (from %s)\n", d.FiscalSerial, d.Source)
	if d.NotOpened != "" {
		fmt.Fprintln(e.stderr, d.NotOpened)
	}
	if d.Conflict {
		var parts []string
		for k, v := range d.Conflicting {
			parts = append(parts, k+"="+v)
		}
		sort.Strings(parts)
		fmt.Fprintf(e.stderr, "warning: the sources disagree: %s; registration uses %s\n", strings.Join(parts, ", "), d.Source)
	}
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
		return fmt.Errorf("%v: another program (most likely the POS) holds the port, and the agent leaves it alone; it uses the POS's report or its cached identity (close the POS program to probe now)", err)
	case errors.Is(err, device.ErrTimeout):
		return fmt.Errorf("%v: check the cable, that the ÖKC is on, and the baud rate (now %d)", err, baud)
	case errors.Is(err, device.ErrDisconnected):
		return fmt.Errorf("%v: the port went away during the read; check the USB cable", err)
	case errors.Is(err, device.ErrUnregistered):
		return fmt.Errorf("%v: the ÖKC does not answer to the id in the request; give its fiscal id: --fiscal-serial JI20012345", err)
	case errors.Is(err, device.ErrDeviceBusy):
		return fmt.Errorf("%v: the ÖKC is busy (a sale or report in progress?); try again in a moment", err)
	case errors.Is(err, device.ErrResultCode):
		return fmt.Errorf("%v: the ÖKC refused the ECHO request; check its screen for an error and try again", err)
	case errors.Is(err, device.ErrNAK):
		return fmt.Errorf("%v: the ÖKC refused every frame; try --protocol crc16-ccitt or t300, and capture a trace (--trace FILE) for support", err)
	case errors.Is(err, device.ErrStalled):
		return fmt.Errorf("%v: the port driver hung; unplug and replug the USB cable", err)
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
