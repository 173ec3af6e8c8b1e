#!/bin/sh
# tposagent prerm: stop and disable the service when the package is removed
# (deb: "remove"/"purge"; rpm: 0). On upgrade the service keeps running and
# postinst restarts it with the new binary.
set -e
case "$1" in
  remove|purge|0) ;;
  *) exit 0 ;;
esac
if [ -d /run/systemd/system ]; then
  systemctl stop tposagent.service >/dev/null 2>&1 || true
  systemctl disable tposagent.service >/dev/null 2>&1 || true
fi
exit 0
