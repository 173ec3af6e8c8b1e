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
chmod 0600 /etc/tposagent/config.toml 2>/dev/null || true
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if ! /usr/bin/tposagent install --unattended --config /etc/tposagent/config.toml; then
  echo "tposagent: not started yet; run 'sudo tposagent install' to finish the setup" >&2
fi
exit 0
