// Package systemd proves the Linux service on a real systemd: its tests
// boot a debootstrapped Debian under systemd-nspawn with a private
// network (only loopback inside), run the fake TPOSL and Ödüyo servers
// and a simulated fiscal device in it (tposfakes), and take the .deb and
// the bare binary through install, least privilege, kill -9, reboot,
// delivery, the CLI's service commands, uninstall and purge.
//
// They need root, systemd-nspawn, a host where systemd is not PID 1, and
// TPOSAGENT_ROOTFS (a rootfs tarball or directory) and TPOSAGENT_DEB /
// TPOSAGENT_DEB_OLD (packages built by installer/cmd/mkpkg); .ci/run
// provides them. Otherwise each test skips, naming what is missing.
package systemd
