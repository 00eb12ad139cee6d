#!/usr/bin/env bash
# rkt's groups (rkt: fetch/list/rm images; rkt-admin: change /etc/rkt) and trustd's
# unprivileged fetch account, which root's fetches drop to (docs/adr/0005), the metadata
# service's account (the in-pod server the pod's init drops to, and the host daemon that
# rkt metadata-service drops to or systemd starts as; no group rkt), and the
# attester's HTTPS server's account, which rkt attest serve drops it to. Idempotent.
set -euo pipefail
getent group rkt-admin >/dev/null || groupadd --system rkt-admin
getent group rkt >/dev/null || groupadd --system rkt
getent passwd rkt-fetch >/dev/null || \
  useradd --system --gid rkt --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin --comment "trustd unprivileged fetch" rkt-fetch
getent passwd rkt-mds >/dev/null || \
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin --comment "trustd metadata service" rkt-mds
getent passwd rkt-attest >/dev/null || \
  useradd --system --user-group --no-create-home --home-dir /nonexistent \
          --shell /usr/sbin/nologin --comment "trustd attester (HTTPS)" rkt-attest
