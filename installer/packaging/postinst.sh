#!/bin/sh
# tposagent postinst (deb: "configure"; rpm: 1 = install, 2 = upgrade).
# The package ships the unit and a default config with no secrets and no
# token. "tposagent install --unattended" fills the config from TPOSAGENT_*
# environment variables (fleet roll-out), generates the API token, enables
# the unit and starts (or, on upgrade, restarts) the service. When values
# are missing it says which and leaves the service stopped; the package
# install still succeeds.
set -e
case "$1" in
  configure|1|2) ;;
  *) exit 0 ;;
esac
# The service runs as the system user tposagent (a member of dialout for
# the serial port): it owns the data dir (a till where the agent ran as
# root migrates here, outbox included) and reads the config through its
# group. "tposagent install" below does the same; doing it here first
# means a package install without the setup values still leaves a till
# that "sudo tposagent install" can finish.
if ! getent passwd tposagent >/dev/null 2>&1; then
  nologin=/usr/sbin/nologin
  [ -x "$nologin" ] || nologin=/bin/false
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
    --shell "$nologin" --comment "TPOS till agent" tposagent
fi
if getent group dialout >/dev/null 2>&1; then
  usermod -a -G dialout tposagent
fi
chown -R tposagent:tposagent /var/lib/tposagent
chown root:tposagent /etc/tposagent
chmod 0750 /etc/tposagent
if [ -f /etc/tposagent/config.toml ]; then
  chown root:tposagent /etc/tposagent/config.toml
  chmod 0640 /etc/tposagent/config.toml
fi
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if ! /usr/bin/tposagent install --unattended --config /etc/tposagent/config.toml; then
  echo "tposagent: not started yet; run 'sudo tposagent install' to finish the setup" >&2
fi
exit 0
