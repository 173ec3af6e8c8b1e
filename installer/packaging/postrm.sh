#!/bin/sh
# tposagent postrm: config and data stay unless the package is purged
# (deb "purge"); the outbox may hold records not yet delivered.
set -e
if [ -d /run/systemd/system ]; then
  systemctl daemon-reload >/dev/null 2>&1 || true
fi
if [ "$1" = "purge" ]; then
  rm -rf /var/lib/tposagent /etc/tposagent
fi
exit 0
