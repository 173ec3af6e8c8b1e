//go:build linux

package systemd

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// What the fakes inside the container listen on (see tposfakes).
const (
	tposlURL     = "http://127.0.0.1:18080/TPOSL"
	oduyoURL     = "http://127.0.0.1:18081"
	fakePort     = "/dev/ttyFAKE0"
	fakeSerial   = "JI20012345" // the simulator's default fiscal serial
	restartDelay = 5 * time.Second
	maxExposure  = 2.5
	serviceUnit  = "tposagent.service"
	packageUnit  = "/usr/lib/systemd/system/tposagent.service"
	ownUnit      = "/etc/systemd/system/tposagent.service"
	configPath   = "/etc/tposagent/config.toml"
	dataDir      = "/var/lib/tposagent"
	serviceUser  = "tposagent"
	oduyoAPIKey  = "test-apikey-5f1c9a" // the fake's default credentials
	oduyoUser    = "kasa01"
	oduyoPass    = "Gizli-Şifre-7731"
	tposlPass    = "Lisans-Şifre-2210"
	debEnv       = "TPOSAGENT_DEB"
	debOldEnv    = "TPOSAGENT_DEB_OLD"
	fakesUnit    = "tposfakes.service"
	fakesBinPath = "/usr/local/bin/tposfakes"
	modulesLoad  = "/usr/lib/modules-load.d/tposagent.conf"
)

var (
	fakesOnce sync.Once
	fakesBin  string
	fakesErr  error
)

// buildFakes builds tposfakes once per test binary.
func buildFakes(t *testing.T) string {
	t.Helper()
	fakesOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tposfakes-")
		if err != nil {
			fakesErr = err
			return
		}
		fakesBin = filepath.Join(dir, "tposfakes")
		cmd := exec.Command("go", "build", "-o", fakesBin, "./tposfakes")
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			fakesErr = fmt.Errorf("go build tposfakes: %v\n%s", err, out)
		}
	})
	if fakesErr != nil {
		t.Fatal(fakesErr)
	}
	return fakesBin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if mountedNspawnRun != "" {
		_ = syscall.Unmount(mountedNspawnRun, 0)
	}
	if fakesBin != "" {
		os.RemoveAll(filepath.Dir(fakesBin))
	}
	os.Exit(code)
}

// till is a booted container with the fakes running in it.
type till struct {
	t      *testing.T
	name   string
	rootfs string
	m      *machine
}

// newTill prepares a fresh root filesystem with the fakes (and files to
// copy in: host path → path inside) and boots it.
func newTill(t *testing.T, name string, files map[string]string) *till {
	t.Helper()
	src := needs(t)
	bin := buildFakes(t)
	root := rootfsDir(t, src)
	files[bin] = fakesBinPath
	for from, to := range files {
		dst := filepath.Join(root, to)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", from, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy %s into the rootfs: %v %s", from, err, out)
		}
	}
	unit := "[Unit]\nDescription=fake TPOSL, Ödüyo and fiscal device of the systemd proof\n\n" +
		"[Service]\nExecStart=" + fakesBinPath + " serve --state /var/lib/tposfakes\n\n" +
		"[Install]\nWantedBy=multi-user.target\n"
	if err := os.WriteFile(filepath.Join(root, "etc/systemd/system", fakesUnit), []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	wants := filepath.Join(root, "etc/systemd/system/multi-user.target.wants")
	if err := os.MkdirAll(wants, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/etc/systemd/system/"+fakesUnit, filepath.Join(wants, fakesUnit)); err != nil {
		t.Fatal(err)
	}
	tl := &till{t: t, name: name, rootfs: root}
	tl.boot()
	return tl
}

func (tl *till) boot() {
	tl.t.Helper()
	tl.m = boot(tl.t, tl.rootfs, tl.name)
	tl.waitFor("the fakes to answer", 30*time.Second, func() (bool, string) {
		out, err := tl.m.exec(fakesBinPath, "ctl", "GET", "/registrations")
		return err == nil, out
	})
}

// reboot powers the container off and boots the same root filesystem.
func (tl *till) reboot() (down, up time.Duration) {
	tl.t.Helper()
	bootID := tl.bootID()
	down = tl.m.poweroff()
	start := time.Now()
	tl.boot()
	up = time.Since(start)
	if id := tl.bootID(); id == bootID {
		tl.t.Errorf("same boot id %s after the reboot", id)
	}
	return down, up
}

func (tl *till) bootID() string {
	return strings.TrimSpace(tl.m.must("cat", "/proc/sys/kernel/random/boot_id"))
}

// waitFor polls cond every 50 ms until it holds or timeout passes.
func (tl *till) waitFor(what string, timeout time.Duration, cond func() (bool, string)) time.Duration {
	tl.t.Helper()
	start := time.Now()
	var last string
	for {
		ok, state := cond()
		if ok {
			return time.Since(start)
		}
		last = state
		if time.Since(start) > timeout {
			tl.t.Fatalf("waited %s for %s; last state: %s\njournal:\n%s", timeout, what, last, tl.journal())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tl *till) journal() string {
	out, _ := tl.m.exec("journalctl", "--no-pager", "-n", "60", "-u", serviceUnit)
	return out
}

// tposagent runs the CLI inside the container.
func (tl *till) tposagent(env []string, args ...string) (string, error) {
	return tl.m.execEnv(env, append([]string{"tposagent"}, args...)...)
}

func (tl *till) mustAgent(args ...string) string {
	tl.t.Helper()
	out, err := tl.tposagent(nil, args...)
	if err != nil {
		tl.t.Fatalf("tposagent %s: %v\njournal:\n%s", strings.Join(args, " "), err, tl.journal())
	}
	return out
}

// install runs "tposagent install --unattended" against the fakes.
func (tl *till) install(devicePort string) time.Duration {
	tl.t.Helper()
	env := []string{"TPOSAGENT_TPOSL_PASSWORD=" + tposlPass, "TPOSAGENT_ODUYO_API_KEY=" + oduyoAPIKey, "TPOSAGENT_ODUYO_PASSWORD=" + oduyoPass}
	args := []string{"install", "--unattended", "--tposl-url", tposlURL, "--tposl-username", "magaza12",
		"--oduyo-base-url", oduyoURL, "--oduyo-username", oduyoUser, "--tax-number", "1234567890",
		"--company-name", "Örnek Gıda A.Ş.", "--pos-no", "3", "--device-port", devicePort}
	if devicePort == "none" {
		args = append(args, "--fiscal-serial", fakeSerial)
	}
	start := time.Now()
	out, err := tl.tposagent(env, args...)
	took := time.Since(start)
	if err != nil {
		tl.t.Fatalf("install: %v\n%s\njournal:\n%s", err, out, tl.journal())
	}
	for _, s := range []string{tposlPass, oduyoAPIKey, oduyoPass} {
		if strings.Contains(out, s) {
			tl.t.Errorf("install printed a secret:\n%s", out)
		}
	}
	tl.t.Logf("install:\n%s", out)
	return took
}

// agentStatus is the part of "tposagent status --json" the proof reads.
type agentStatus struct {
	Version string `json:"version"`
	Device  struct {
		FiscalSerial string `json:"fiscal_serial"`
		Source       string `json:"source"`
		Port         string `json:"port"`
		Error        string `json:"error"`
	} `json:"device"`
	Outbox struct {
		Pending     int    `json:"pending"`
		InFlight    int    `json:"in_flight"`
		Dead        int    `json:"dead"`
		Quarantined string `json:"quarantined"`
	} `json:"outbox"`
}

func (tl *till) status() (*agentStatus, error) {
	out, err := tl.tposagent(nil, "status", "--json")
	if err != nil {
		return nil, err
	}
	var s agentStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		return nil, fmt.Errorf("status --json: %w: %s", err, out)
	}
	return &s, nil
}

// waitActive waits until the service is active and its local API answers.
func (tl *till) waitActive(timeout time.Duration) *agentStatus {
	tl.t.Helper()
	var st *agentStatus
	tl.waitFor("the service to be active with its local API answering", timeout, func() (bool, string) {
		state := tl.m.prop(serviceUnit, "ActiveState")
		if state != "active" {
			return false, "ActiveState=" + state
		}
		s, err := tl.status()
		if err != nil {
			return false, err.Error()
		}
		st = s
		return true, ""
	})
	return st
}

// mainPID is the service's main process (host view not needed: inside).
func (tl *till) mainPID() int {
	tl.t.Helper()
	pid, _ := strconv.Atoi(tl.m.prop(serviceUnit, "MainPID"))
	return pid
}

// delivery is what the fake Ödüyo accepted (oduyotest.Delivery).
type delivery struct {
	Kind          string
	IntegrationID string
}

func (tl *till) delivered() []delivery {
	tl.t.Helper()
	out := tl.m.must(fakesBinPath, "ctl", "GET", "/delivered")
	var d []delivery
	if err := json.Unmarshal([]byte(out), &d); err != nil {
		tl.t.Fatalf("delivered: %v: %s", err, out)
	}
	return d
}

func (tl *till) oduyo(state string) {
	tl.t.Helper()
	tl.m.must(fakesBinPath, "ctl", "POST", "/oduyo/"+state)
}

// enqueue accepts n kasa updates and n special codes through the CLI (the
// local API) and returns their integration ids.
func (tl *till) enqueue(prefix string, n int) []string {
	tl.t.Helper()
	var ids []string
	for i := 1; i <= n; i++ {
		k := fmt.Sprintf("%s-K%d", prefix, i)
		tl.mustAgent("kasa", "update", "--integration-id", k, "--status", "1", "--key1", "21", "--balance", "1.260,50", "--description", "MERKEZ KASA İĞÜŞÖÇ")
		s := fmt.Sprintf("%s-S%d", prefix, i)
		tl.mustAgent("special-code", "create", "--integration-id", s, "--code", "İNDİRİM"+strconv.Itoa(i), "--status", "1", "--typecode", "26")
		ids = append(ids, k, s)
	}
	sort.Strings(ids)
	return ids
}

// waitDelivered waits until every id has reached the fake Ödüyo and the
// outbox is empty.
func (tl *till) waitDelivered(ids []string) time.Duration {
	tl.t.Helper()
	// The outbox backs off while Ödüyo is down (up to about half a minute
	// between tries); a loaded machine adds to it.
	return tl.waitFor(fmt.Sprintf("%d records to reach Ödüyo", len(ids)), 120*time.Second, func() (bool, string) {
		got := map[string]bool{}
		for _, d := range tl.delivered() {
			got[d.IntegrationID] = true
		}
		var missing []string
		for _, id := range ids {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) > 0 {
			return false, fmt.Sprintf("missing %v", missing)
		}
		st, err := tl.status()
		if err != nil {
			return false, err.Error()
		}
		return st.Outbox.Pending+st.Outbox.InFlight == 0, fmt.Sprintf("outbox %+v", st.Outbox)
	})
}

// pending reads the outbox's pending and in-flight count.
func (tl *till) pending() int {
	tl.t.Helper()
	st, err := tl.status()
	if err != nil {
		tl.t.Fatalf("status: %v\n%s", err, tl.journal())
	}
	if st.Outbox.Dead != 0 {
		tl.t.Errorf("%d dead records", st.Outbox.Dead)
	}
	return st.Outbox.Pending + st.Outbox.InFlight
}

// exposure runs systemd-analyze security on the unit and returns the
// overall exposure.
func (tl *till) exposure() (float64, string) {
	tl.t.Helper()
	out, _ := tl.m.exec("systemd-analyze", "security", "--no-pager", serviceUnit)
	m := regexp.MustCompile(`Overall exposure level for tposagent\.service: ([0-9.]+) (\S+)`).FindStringSubmatch(out)
	if m == nil {
		tl.t.Fatalf("no exposure level in:\n%s", out)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		tl.t.Fatal(err)
	}
	return v, m[1] + " " + m[2]
}

// checkLeastPrivilege: the main process runs as the service user with the
// serial group, no capabilities, seccomp, and the unit's exposure is low.
func (tl *till) checkLeastPrivilege() {
	tl.t.Helper()
	pid := tl.mainPID()
	st := tl.m.must("cat", fmt.Sprintf("/proc/%d/status", pid))
	uid := strings.TrimSpace(tl.m.must("id", "-u", serviceUser))
	dialout := strings.TrimSpace(tl.m.must("getent", "group", "dialout"))
	dialoutGID := strings.Split(dialout, ":")[2]
	field := func(name string) string {
		for _, line := range strings.Split(st, "\n") {
			if strings.HasPrefix(line, name+":") {
				return strings.TrimSpace(strings.TrimPrefix(line, name+":"))
			}
		}
		return ""
	}
	if f := strings.Fields(field("Uid")); len(f) == 0 || f[0] != uid || f[1] != uid {
		tl.t.Errorf("main process Uid %q, want %s (%s)", field("Uid"), uid, serviceUser)
	}
	if !strings.Contains(" "+field("Groups")+" ", " "+dialoutGID+" ") {
		tl.t.Errorf("main process groups %q lack dialout (%s)", field("Groups"), dialoutGID)
	}
	for _, f := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if v := field(f); strings.Trim(v, "0") != "" {
			tl.t.Errorf("%s = %s, want none", f, v)
		}
	}
	if field("NoNewPrivs") != "1" || field("Seccomp") != "2" {
		tl.t.Errorf("NoNewPrivs %q Seccomp %q, want 1 and 2", field("NoNewPrivs"), field("Seccomp"))
	}
	if members := strings.Split(dialout, ":")[3]; !strings.Contains(","+members+",", ","+serviceUser+",") {
		tl.t.Errorf("user %s is not a member of dialout (%s)", serviceUser, dialout)
	}
	exp, text := tl.exposure()
	tl.t.Logf("RESULT systemd-analyze security %s: %s", serviceUnit, text)
	if exp > maxExposure {
		out, _ := tl.m.exec("systemd-analyze", "security", "--no-pager", serviceUnit)
		tl.t.Errorf("exposure %.1f > %.1f:\n%s", exp, maxExposure, out)
	}
}

// killAndRestart kills the main process with SIGKILL and measures how
// long systemd takes to run a new one.
func (tl *till) killAndRestart() time.Duration {
	tl.t.Helper()
	old := tl.mainPID()
	restarts, _ := strconv.Atoi(tl.m.prop(serviceUnit, "NRestarts"))
	start := time.Now()
	tl.m.must("kill", "-9", strconv.Itoa(old))
	took := tl.waitFor("a new main process after kill -9", restartDelay+10*time.Second, func() (bool, string) {
		pid := tl.mainPID()
		state := tl.m.prop(serviceUnit, "ActiveState")
		return pid != 0 && pid != old && state == "active", fmt.Sprintf("MainPID=%d ActiveState=%s", pid, state)
	})
	if took > restartDelay+2*time.Second {
		tl.t.Errorf("restarted %s after kill -9, want within RestartSec+2s = %s", took.Round(time.Millisecond), restartDelay+2*time.Second)
	}
	if n, _ := strconv.Atoi(tl.m.prop(serviceUnit, "NRestarts")); n != restarts+1 {
		tl.t.Errorf("NRestarts %d, want %d", n, restarts+1)
	}
	_ = start
	return took
}

// checkAfterNetworkOnline: the unit is ordered after network-online.target
// and this boot started it after that target was reached.
func (tl *till) checkAfterNetworkOnline() {
	tl.t.Helper()
	if after := tl.m.prop(serviceUnit, "After"); !strings.Contains(" "+after+" ", " network-online.target ") {
		tl.t.Errorf("After=%s lacks network-online.target", after)
	}
	online, _ := strconv.ParseUint(tl.m.prop("network-online.target", "ActiveEnterTimestampMonotonic"), 10, 64)
	started, _ := strconv.ParseUint(tl.m.prop(serviceUnit, "ExecMainStartTimestampMonotonic"), 10, 64)
	if online == 0 || started == 0 || started < online {
		tl.t.Errorf("network-online.target reached at %d µs, service started at %d µs: not after it", online, started)
	}
}

// lifecycle is what a till goes through with the service installed:
// least privilege, serial port, enqueue while Ödüyo is down, kill -9,
// reboot, delivery, stop/start/restart/status.
func (tl *till) lifecycle(devicePort string) {
	t := tl.t
	st := tl.waitActive(30 * time.Second)
	if state := tl.m.prop(serviceUnit, "UnitFileState"); state != "enabled" {
		t.Errorf("UnitFileState %s after install, want enabled", state)
	}
	tl.checkLeastPrivilege()
	if devicePort != "none" {
		// The device end of the pseudo-terminal is root:dialout 0660: the
		// service reads the identity through its group.
		tl.waitFor("the fiscal identity read over the serial port", 60*time.Second, func() (bool, string) {
			s, err := tl.status()
			if err != nil {
				return false, err.Error()
			}
			st = s
			return s.Device.FiscalSerial == fakeSerial && s.Device.Error == "", fmt.Sprintf("%+v", s.Device)
		})
		t.Logf("device: %+v", st.Device)
		if n := strings.TrimSpace(tl.m.must(fakesBinPath, "ctl", "GET", "/device-requests")); n == "0" {
			t.Error("the simulated device got no request")
		}
	}

	tl.oduyo("down")
	ids := tl.enqueue("A", 4)
	if n := tl.pending(); n != len(ids) {
		t.Fatalf("%d records in the outbox after enqueueing %d", n, len(ids))
	}
	restart := tl.killAndRestart()
	t.Logf("TIMING restart after kill -9 (RestartSec=%s): %s", restartDelay, restart.Round(time.Millisecond))
	tl.waitActive(30 * time.Second)
	if n := tl.pending(); n != len(ids) {
		t.Fatalf("%d records in the outbox after kill -9, want %d", n, len(ids))
	}
	more := tl.enqueue("B", 2)
	ids = append(ids, more...)

	down, up := tl.reboot()
	t.Logf("TIMING reboot: poweroff %s, boot to running %s (boot again incl. fakes %s)", down.Round(time.Millisecond), tl.m.booted.Round(time.Millisecond), up.Round(time.Millisecond))
	if state := tl.m.prop(serviceUnit, "UnitFileState"); state != "enabled" {
		t.Errorf("UnitFileState %s after reboot, want enabled", state)
	}
	tl.waitActive(30 * time.Second)
	tl.checkAfterNetworkOnline()
	if n := tl.pending(); n != len(ids) {
		t.Fatalf("%d records in the outbox after the reboot, want %d", n, len(ids))
	}
	tl.oduyo("up")
	took := tl.waitDelivered(ids)
	t.Logf("TIMING %d records delivered %s after Ödüyo came back", len(ids), took.Round(time.Millisecond))

	// The CLI's service commands on a real systemd.
	tl.mustAgent("stop")
	if state := tl.m.prop(serviceUnit, "ActiveState"); state != "inactive" {
		t.Errorf("ActiveState %s after tposagent stop", state)
	}
	if out, err := tl.tposagent(nil, "status"); err == nil {
		t.Errorf("status answered with the service stopped:\n%s", out)
	} else {
		t.Logf("status while stopped: %v", err)
	}
	tl.mustAgent("start")
	tl.waitActive(30 * time.Second)
	before := tl.mainPID()
	tl.mustAgent("restart")
	tl.waitActive(30 * time.Second)
	if after := tl.mainPID(); after == before {
		t.Errorf("tposagent restart kept main PID %d", before)
	}
	out := tl.mustAgent("status")
	if !strings.Contains(out, fakeSerial) {
		t.Errorf("status does not show the fiscal serial:\n%s", out)
	}
}

// uninstall runs "tposagent uninstall" and then "uninstall --purge".
func (tl *till) uninstall() time.Duration {
	t := tl.t
	out := tl.mustAgent("uninstall")
	t.Logf("uninstall:\n%s", out)
	if state := tl.m.prop(serviceUnit, "ActiveState"); state != "inactive" {
		t.Errorf("ActiveState %s after uninstall", state)
	}
	if state := tl.m.prop(serviceUnit, "UnitFileState"); state == "enabled" {
		t.Error("still enabled after uninstall")
	}
	for _, p := range []string{configPath, dataDir + "/outbox.db"} {
		if _, err := tl.m.exec("test", "-e", p); err != nil {
			t.Errorf("uninstall without --purge removed %s", p)
		}
	}
	start := time.Now()
	out = tl.mustAgent("uninstall", "--purge")
	took := time.Since(start)
	t.Logf("uninstall --purge:\n%s", out)
	for _, p := range []string{configPath, dataDir} {
		if _, err := tl.m.exec("test", "-e", p); err == nil {
			t.Errorf("uninstall --purge left %s", p)
		}
	}
	return took
}

// checkNothingLeft: no unit, no process, no config or data dir. The
// system user stays (Debian practice: files it owned may remain on
// backups or other disks).
func (tl *till) checkNothingLeft() {
	t := tl.t
	for _, p := range []string{ownUnit, packageUnit, "/etc/systemd/system/multi-user.target.wants/" + serviceUnit, "/etc/tposagent", dataDir, modulesLoad} {
		if _, err := tl.m.exec("test", "-e", p); err == nil {
			t.Errorf("%s is left", p)
		}
	}
	if state := tl.m.prop(serviceUnit, "LoadState"); state != "not-found" {
		t.Errorf("LoadState %s, want not-found", state)
	}
	if out, err := tl.m.exec("pgrep", "-x", "tposagent"); err == nil {
		t.Errorf("a tposagent process is left: %s", out)
	}
	if out, err := tl.m.exec("getent", "passwd", serviceUser); err == nil {
		t.Logf("system user kept (Debian practice): %s", strings.TrimSpace(out))
	}
}

func debs(t *testing.T, names ...string) []string {
	t.Helper()
	var paths []string
	for _, n := range names {
		p := os.Getenv(n)
		if p == "" {
			t.Skipf("no package: set %s to a tposagent .deb for this machine's architecture (.ci/run builds it with installer/cmd/mkpkg)", n)
		}
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s: %v", n, err)
		}
		paths = append(paths, p)
	}
	return paths
}

// TestDebUnderSystemd: the .deb on a real systemd, from dpkg -i to dpkg -P.
func TestDebUnderSystemd(t *testing.T) {
	t.Parallel() // its own container and private network; mostly waiting on the agent's timers
	deb := debs(t, debEnv)[0]
	tl := newTill(t, "tposdeb", map[string]string{deb: "/root/tposagent.deb"})

	start := time.Now()
	out := tl.m.must("dpkg", "-i", "/root/tposagent.deb")
	t.Logf("TIMING dpkg -i: %s", time.Since(start).Round(time.Millisecond))
	t.Logf("dpkg -i:\n%s", out)
	if _, err := tl.m.exec("id", serviceUser); err != nil {
		t.Fatalf("the package did not create the user: %v", err)
	}
	if _, err := tl.m.exec("test", "-f", modulesLoad); err != nil {
		t.Errorf("the package did not install %s", modulesLoad)
	}
	if state := tl.m.prop(serviceUnit, "ActiveState"); state == "active" {
		t.Error("the service runs without its setup values")
	}
	took := tl.install(fakePort)
	t.Logf("TIMING tposagent install --unattended: %s", took.Round(time.Millisecond))
	tl.lifecycle(fakePort)
	took = tl.uninstall()
	t.Logf("TIMING uninstall --purge: %s", took.Round(time.Millisecond))

	// The package on its own: install, then remove and purge it.
	tl.install(fakePort)
	tl.waitActive(30 * time.Second)
	start = time.Now()
	tl.m.must("dpkg", "-r", "tposagent")
	t.Logf("TIMING dpkg -r: %s", time.Since(start).Round(time.Millisecond))
	if state := tl.m.prop(serviceUnit, "ActiveState"); state == "active" {
		t.Error("active after dpkg -r")
	}
	if _, err := tl.m.exec("test", "-e", configPath); err != nil {
		t.Error("dpkg -r removed the config")
	}
	start = time.Now()
	tl.m.must("dpkg", "-P", "tposagent")
	t.Logf("TIMING dpkg -P: %s", time.Since(start).Round(time.Millisecond))
	tl.checkNothingLeft()
}

// TestBareBinaryUnderSystemd: the same with the binary alone, no package.
func TestBareBinaryUnderSystemd(t *testing.T) {
	t.Parallel() // its own container and private network; mostly waiting on the agent's timers
	deb := debs(t, debEnv)[0]
	x := t.TempDir()
	if out, err := exec.Command("dpkg-deb", "-x", deb, x).CombinedOutput(); err != nil {
		t.Skipf("cannot take the binary out of %s (dpkg-deb): %v %s", deb, err, out)
	}
	tl := newTill(t, "tposbare", map[string]string{filepath.Join(x, "usr/bin/tposagent"): "/usr/local/bin/tposagent"})
	if _, err := tl.m.exec("id", serviceUser); err == nil {
		t.Fatal("the user exists before install")
	}
	took := tl.install("none")
	t.Logf("TIMING tposagent install --unattended (bare binary): %s", took.Round(time.Millisecond))
	if unit := tl.m.must("cat", ownUnit); !strings.Contains(unit, "ExecStart=/usr/local/bin/tposagent run --service --config "+configPath) {
		t.Errorf("unit does not run the installed binary:\n%s", unit)
	}
	tl.lifecycle("none")
	took = tl.uninstall()
	t.Logf("TIMING uninstall --purge (bare binary): %s", took.Round(time.Millisecond))
	tl.m.must("rm", "/usr/local/bin/tposagent")
	tl.checkNothingLeft()
}

// TestDebUpgrade: a till on the old package whose agent ran as root (its
// data dir and outbox owned by root) holds records while Ödüyo is down;
// the new package restarts the service with the new binary as the service
// user, keeps config, token and outbox, and the records are delivered.
func TestDebUpgrade(t *testing.T) {
	t.Parallel() // its own container and private network; mostly waiting on the agent's timers
	p := debs(t, debOldEnv, debEnv)
	tl := newTill(t, "tposupgrade", map[string]string{p[0]: "/root/old.deb", p[1]: "/root/new.deb"})
	tl.m.must("dpkg", "-i", "/root/old.deb")
	tl.install("none")
	oldVersion := tl.waitActive(30 * time.Second).Version

	// The old agent ran as root: a drop-in stands for its unit.
	dropIn := filepath.Join(tl.rootfs, "etc/systemd/system/tposagent.service.d/as-root.conf")
	if err := os.MkdirAll(filepath.Dir(dropIn), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dropIn, []byte("[Service]\nUser=root\nGroup=root\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tl.m.must("systemctl", "daemon-reload")
	tl.m.must("systemctl", "restart", serviceUnit)
	tl.waitActive(30 * time.Second)
	tl.oduyo("down")
	ids := tl.enqueue("U", 3)
	tl.m.must("chown", "-R", "root:root", dataDir, "/etc/tposagent")
	tl.m.must("chmod", "0600", configPath)
	if owner := strings.TrimSpace(tl.m.must("stat", "-c", "%U", dataDir+"/outbox.db")); owner != "root" {
		t.Fatalf("outbox owned by %s before the upgrade, want root", owner)
	}
	if n := tl.pending(); n != len(ids) {
		t.Fatalf("%d records pending before the upgrade, want %d", n, len(ids))
	}
	config := tl.m.must("cat", configPath)
	oldPID := tl.mainPID()

	// The new package's unit has no such drop-in.
	if err := os.Remove(dropIn); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out := tl.m.must("dpkg", "-i", "/root/new.deb")
	t.Logf("TIMING upgrade dpkg -i: %s", time.Since(start).Round(time.Millisecond))
	t.Logf("upgrade:\n%s", out)
	st := tl.waitActive(30 * time.Second)
	if st.Version == oldVersion || tl.mainPID() == oldPID {
		t.Errorf("after the upgrade the service runs version %s (PID %d), before %s (PID %d): not restarted with the new binary", st.Version, tl.mainPID(), oldVersion, oldPID)
	}
	t.Logf("upgraded from %s to %s", oldVersion, st.Version)
	if st.Outbox.Quarantined != "" {
		t.Errorf("outbox quarantined on upgrade: %s", st.Outbox.Quarantined)
	}
	if got := tl.m.must("cat", configPath); got != config {
		t.Errorf("the upgrade changed the config (token included):\n%s\nwant\n%s", got, config)
	}
	for _, p := range []string{dataDir, dataDir + "/outbox.db"} {
		if owner := strings.TrimSpace(tl.m.must("stat", "-c", "%U", p)); owner != serviceUser {
			t.Errorf("%s owned by %s after the upgrade, want %s", p, owner, serviceUser)
		}
	}
	if group := strings.TrimSpace(tl.m.must("stat", "-c", "%G %a", configPath)); group != serviceUser+" 640" {
		t.Errorf("config %s after the upgrade, want group %s mode 640", group, serviceUser)
	}
	tl.checkLeastPrivilege()
	if n := tl.pending(); n != len(ids) {
		t.Fatalf("%d records pending after the upgrade, want %d", n, len(ids))
	}
	tl.oduyo("up")
	took := tl.waitDelivered(ids)
	t.Logf("TIMING %d records delivered %s after Ödüyo came back", len(ids), took.Round(time.Millisecond))
}
