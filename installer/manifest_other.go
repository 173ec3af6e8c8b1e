//go:build !windows

package installer

import (
	"os"
	"syscall"
)

// manifestTrusted: purge run by root believes a manifest only when root
// owns it. The service user owns the data dir, so it could replace the
// manifest with one that names, say, /var/log/auth.log as its log; install
// leaves the manifest root's (chownTree and chownAgentFiles skip it).
func manifestTrusted(fi os.FileInfo) bool {
	st, ok := fi.Sys().(*syscall.Stat_t)
	return !ok || os.Geteuid() != 0 || st.Uid == 0
}
