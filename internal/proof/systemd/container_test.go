//go:build linux

package systemd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tposagent/tposagent/internal/testrig"
)

// rootfsEnv names the root filesystem to boot: a tarball or a directory
// of a debootstrapped Debian with systemd (.ci/run builds one).
const rootfsEnv = "TPOSAGENT_ROOTFS"

// needs skips the test naming exactly what this machine lacks.
func needs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (systemd-nspawn, nsenter, cgroups)")
	}
	for _, tool := range []string{"systemd-nspawn", "nsenter", "tar"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("no %s on PATH (apt-get install systemd-container util-linux tar)", tool)
		}
	}
	rootfs := os.Getenv(rootfsEnv)
	if rootfs == "" {
		t.Skipf("no root filesystem to boot: set %s to a debootstrapped Debian with systemd (a tarball or a directory; .ci/run builds one with debootstrap)", rootfsEnv)
	}
	if _, err := os.Stat(rootfs); err != nil {
		t.Skipf("%s=%s: %v", rootfsEnv, rootfs, err)
	}
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		t.Skip("systemd runs this machine: the proof boots its own systemd in a container and needs a host without one (as CI is)")
	}
	for _, d := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(d); err != nil {
			if _, err2 := os.Stat("/sys/fs/cgroup/cgroup.controllers"); err2 == nil {
				break // pure cgroup2 host: nspawn handles it
			}
			t.Skipf("no %s: the container's cgroups cannot be isolated here", d)
		}
	}
	return rootfs
}

// rootfsDir unpacks the root filesystem into a fresh directory (a test
// changes it: packages, users, the outbox) and prepares it: no getty on the
// console, the fakes' unit enabled.
func rootfsDir(t *testing.T, src string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "rootfs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var cmd *exec.Cmd
	if fi, err := os.Stat(src); err == nil && fi.IsDir() {
		cmd = exec.Command("cp", "-a", src+"/.", dir)
	} else {
		cmd = exec.Command("tar", "-C", dir, "-xf", src)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("unpack %s: %v\n%s", src, err, out)
	}
	t.Logf("TIMING unpack rootfs: %s", time.Since(start).Round(time.Millisecond))
	mask := filepath.Join(dir, "etc/systemd/system/console-getty.service")
	_ = os.Remove(mask)
	if err := os.Symlink("/dev/null", mask); err != nil {
		t.Fatal(err)
	}
	return dir
}

// machine is one boot of a root filesystem under systemd-nspawn with a
// private network (only loopback inside).
type machine struct {
	t       *testing.T
	name    string
	rootfs  string
	cmd     *exec.Cmd
	done    chan error
	leader  int // PID (host view) of the container's systemd
	console *testrig.Buffer
	cgroups []string
	booted  time.Duration
}

var (
	nspawnRunOnce sync.Once
	// mountedNspawnRun is set when boot mounted the tmpfs; TestMain
	// unmounts it at the end.
	mountedNspawnRun string
)

// boot starts systemd in rootfs and waits until it is running.
func boot(t *testing.T, rootfs, name string) *machine {
	t.Helper()
	// Without a host systemd, nspawn needs a tmpfs here.
	nspawnRunOnce.Do(func() {
		dir := "/run/systemd/nspawn"
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if !isMountPoint(dir) {
			if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "mode=0755"); err != nil {
				t.Fatalf("mount tmpfs on %s: %v", dir, err)
			}
			mountedNspawnRun = dir
		}
	})
	m := &machine{t: t, name: name, rootfs: rootfs, console: &testrig.Buffer{}, done: make(chan error, 1)}
	// nspawn's own cgroup, so that it leaves nothing at the host's root.
	var enter []string
	for _, h := range []string{"/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd"} {
		if _, err := os.Stat(h); err != nil {
			continue
		}
		cg := filepath.Join(h, "tposproof-"+name)
		if err := os.MkdirAll(cg, 0o755); err != nil {
			t.Fatal(err)
		}
		m.cgroups = append(m.cgroups, cg)
		enter = append(enter, fmt.Sprintf("echo $$ > %s/cgroup.procs", cg))
	}
	script := strings.Join(append(enter, `exec systemd-nspawn -b -D "$1" -M "$2" --register=no --keep-unit --private-network --console=read-only`), "\n")
	m.cmd = exec.Command("sh", "-c", script, "sh", rootfs, name)
	m.cmd.Stdout = m.console
	m.cmd.Stderr = m.console
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := m.cmd.Start(); err != nil {
		t.Fatalf("start systemd-nspawn: %v", err)
	}
	go func() { m.done <- m.cmd.Wait() }()
	t.Cleanup(m.shutdown)

	deadline := time.Now().Add(60 * time.Second)
	for m.leader == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no systemd inside the container after 60 s; console:\n%s", m.console.String())
		}
		select {
		case err := <-m.done:
			m.done <- err
			t.Fatalf("systemd-nspawn exited: %v; console:\n%s", err, m.console.String())
		case <-time.After(20 * time.Millisecond):
		}
		m.leader = findInit(m.cmd.Process.Pid)
	}
	for {
		out, _ := m.exec("systemctl", "is-system-running")
		st := strings.TrimSpace(out)
		if st == "running" || st == "degraded" {
			if st == "degraded" {
				failed, _ := m.exec("systemctl", "--failed", "--no-legend")
				t.Logf("system degraded: %s", failed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("system not running after 60 s (%q); console:\n%s", st, m.console.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.booted = time.Since(start)
	t.Logf("TIMING boot %s to running: %s", name, m.booted.Round(time.Millisecond))
	return m
}

// findInit returns the PID of the first descendant of pid whose command
// is systemd, 0 when there is none yet.
func findInit(pid int) int {
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if p != pid {
			if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); err == nil && strings.TrimSpace(string(comm)) == "systemd" {
				return p
			}
		}
		tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", p))
		for _, tf := range tasks {
			b, _ := os.ReadFile(tf)
			for _, f := range strings.Fields(string(b)) {
				if c, err := strconv.Atoi(f); err == nil {
					queue = append(queue, c)
				}
			}
		}
	}
	return 0
}

func isMountPoint(dir string) bool {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

// exec runs a command inside the container (all its namespaces) with a
// clean environment and returns its combined output.
func (m *machine) exec(args ...string) (string, error) {
	return m.execEnv(nil, args...)
}

func (m *machine) execEnv(env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	full := append([]string{"-t", strconv.Itoa(m.leader), "-a", "env", "-i",
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8"}, env...)
	full = append(full, args...)
	out, err := exec.CommandContext(ctx, "nsenter", full...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// must runs a command inside and fails the test when it fails.
func (m *machine) must(args ...string) string {
	m.t.Helper()
	out, err := m.exec(args...)
	if err != nil {
		m.t.Fatal(err)
	}
	return out
}

// prop reads one property of a unit.
func (m *machine) prop(unit, name string) string {
	m.t.Helper()
	return strings.TrimSpace(m.must("systemctl", "show", "-p", name, "--value", unit))
}

// shutdown powers the container off and waits for nspawn to exit; it
// kills it when that takes more than a minute. Safe to call twice.
func (m *machine) shutdown() {
	if m.cmd == nil {
		return
	}
	if m.leader != 0 {
		_, _ = m.exec("systemctl", "poweroff")
	}
	select {
	case <-m.done:
	case <-time.After(60 * time.Second):
		m.t.Errorf("container %s did not power off in 60 s; killing it", m.name)
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.done
	}
	m.cmd = nil
	for _, cg := range m.cgroups {
		removeCgroup(cg)
	}
}

// poweroff shuts down and reports how long it took.
func (m *machine) poweroff() time.Duration {
	start := time.Now()
	m.shutdown()
	return time.Since(start)
}

// removeCgroup removes a cgroup directory depth first.
func removeCgroup(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			removeCgroup(filepath.Join(dir, e.Name()))
		}
	}
	_ = os.Remove(dir)
}
