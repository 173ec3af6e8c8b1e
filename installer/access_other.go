//go:build !windows

package installer

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
)

func init() { prepareAccess = prepareServiceAccess }

// prepareServiceAccess makes the service user (ServiceUser) a system user
// with a group of its own and a member of the serial group, and gives it
// the agent's files: the data dir and the agent's files in it become its
// own (a till that ran the agent as root migrates here, outbox included),
// the config file and its directory become readable by its group, and a
// log directory outside the data dir writable by it. A directory that the
// agent did not create (data_dir = "/var/lib") is never taken over: only
// the agent's files in it are, and a warning says what to do.
func prepareServiceAccess(s Spec) (warnings []string, err error) {
	uid, gid, err := serviceUser(ServiceUser, "dialout")
	if err != nil {
		return nil, err
	}
	if s.DataDir != "" {
		own, err := ownedDir(s.DataDir, "/var/lib/tposagent")
		if err != nil {
			return nil, fmt.Errorf("data dir: %w", err)
		}
		if own {
			if err := chownTree(s.DataDir, uid, gid); err != nil {
				return nil, fmt.Errorf("give the data dir to %s: %w", ServiceUser, err)
			}
		} else {
			if err := chownAgentFiles(s.DataDir, uid, gid); err != nil {
				return nil, fmt.Errorf("give the agent's files to %s: %w", ServiceUser, err)
			}
			warnings = append(warnings, fmt.Sprintf("data dir %s was not created by tposagent and is left as it is: the service runs as user %s and needs write access to it (chown or an ACL)", s.DataDir, ServiceUser))
		}
	}
	if s.ConfigPath != "" {
		if err := os.Chown(s.ConfigPath, 0, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config: %w", err)
		}
		if err := os.Chmod(s.ConfigPath, 0o640); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("config: %w", err)
		}
		dir := filepath.Dir(s.ConfigPath)
		if own, err := ownedDir(dir, "/etc/tposagent"); err == nil && own {
			if err := os.Chown(dir, 0, gid); err != nil {
				return nil, fmt.Errorf("config dir: %w", err)
			}
			if err := os.Chmod(dir, 0o750); err != nil {
				return nil, fmt.Errorf("config dir: %w", err)
			}
		}
	}
	if s.LogFile != "" && s.DataDir != "" && !within(s.DataDir, s.LogFile) {
		dir := filepath.Dir(s.LogFile)
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			if err := os.MkdirAll(dir, 0o750); err != nil {
				return nil, fmt.Errorf("log dir: %w", err)
			}
			if err := markCreated(dir); err != nil {
				return nil, fmt.Errorf("log dir: %w", err)
			}
			if err := chownTree(dir, uid, gid); err != nil {
				return nil, fmt.Errorf("log dir: %w", err)
			}
		} else {
			for _, p := range append([]string{s.LogFile}, globOrNil(globEscape(s.LogFile)+".[0-9]*")...) {
				if err := os.Lchown(p, uid, gid); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return nil, fmt.Errorf("log file: %w", err)
				}
			}
		}
	}
	return warnings, nil
}

func globOrNil(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	return m
}

// within reports whether path lies inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// ownedDir reports whether dir is the agent's: the default location, or
// one with the installer's CreatedMarker.
func ownedDir(dir, defaultDir string) (bool, error) {
	if filepath.Clean(dir) == defaultDir {
		return true, nil
	}
	_, err := os.Lstat(filepath.Join(dir, CreatedMarker))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// chownTree gives dir and everything under it to uid:gid (links
// themselves, never their targets).
func chownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if d.Name() == ManifestName {
			return nil // stays root's: purge trusts only a manifest root owns
		}
		return os.Lchown(p, uid, gid)
	})
}

// chownAgentFiles gives the agent's files in dir (AgentFile) to uid:gid.
func chownAgentFiles(dir string, uid, gid int) error {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		if !e.IsDir() && AgentFile(e.Name()) && e.Name() != ManifestName {
			if err := os.Lchown(filepath.Join(dir, e.Name()), uid, gid); err != nil {
				return err
			}
		}
	}
	return nil
}

// serviceUser is ensureSystemUser; tests replace it so as not to add
// users to the machine.
var serviceUser = ensureSystemUser

// ensureSystemUser creates the system user name with a group of the same
// name when it does not exist, adds it to serialGroup when that group
// exists, and returns its uid and gid.
func ensureSystemUser(name, serialGroup string) (uid, gid int, err error) {
	if _, err := user.Lookup(name); err != nil {
		var unknown user.UnknownUserError
		if !errors.As(err, &unknown) {
			return 0, 0, fmt.Errorf("look up user %s: %w", name, err)
		}
		nologin := "/usr/sbin/nologin"
		if _, err := os.Stat(nologin); err != nil {
			nologin = "/bin/false"
		}
		if out, err := exec.Command("useradd", "--system", "--user-group", "--no-create-home",
			"--home-dir", "/nonexistent", "--shell", nologin, "--comment", "TPOS till agent", name).CombinedOutput(); err != nil {
			return 0, 0, fmt.Errorf("create system user %s: useradd: %w: %s", name, err, strings.TrimSpace(string(out)))
		}
	}
	u, err := user.Lookup(name)
	if err != nil {
		return 0, 0, fmt.Errorf("look up user %s: %w", name, err)
	}
	if serialGroup != "" {
		if g, err := user.LookupGroup(serialGroup); err == nil {
			ids, _ := u.GroupIds()
			member := false
			for _, id := range ids {
				member = member || id == g.Gid
			}
			if !member {
				if out, err := exec.Command("usermod", "-a", "-G", serialGroup, name).CombinedOutput(); err != nil {
					return 0, 0, fmt.Errorf("add %s to group %s: usermod: %w: %s", name, serialGroup, err, strings.TrimSpace(string(out)))
				}
			}
		}
	}
	uid, err = strconv.Atoi(u.Uid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: uid %q: %w", name, u.Uid, err)
	}
	gid, err = strconv.Atoi(u.Gid)
	if err != nil {
		return 0, 0, fmt.Errorf("user %s: gid %q: %w", name, u.Gid, err)
	}
	return uid, gid, nil
}
