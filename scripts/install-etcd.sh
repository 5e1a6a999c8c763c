#!/usr/bin/env bash
# Installs the real etcd 3.4 server and etcdctl from Debian's packages into a folder, without
# starting any service, and prints the two binaries' paths (etcd first, then etcdctl).
# Idempotent: an existing install is reused.
#   usage: scripts/install-etcd.sh [DEST]
#   DEST defaults to $RAFTKV_ETCD_DIR, else /opt/etcd-reference when it already holds etcd or is
#   writable, else ${XDG_CACHE_HOME:-~/.cache}/raftkv/etcd-reference.
# Used by the differential tests (tests/api/test_differential.py: the same requests to etcd and
# to raftkv) and by side-by-side benchmarks.
set -euo pipefail
pick_dest() {
  if [ -n "${1:-}" ]; then echo "$1"; return; fi
  if [ -n "${RAFTKV_ETCD_DIR:-}" ]; then echo "$RAFTKV_ETCD_DIR"; return; fi
  if [ -x /opt/etcd-reference/usr/bin/etcd ] \
     || { mkdir -p /opt/etcd-reference 2>/dev/null && [ -w /opt/etcd-reference ]; }; then
    echo /opt/etcd-reference; return
  fi
  echo "${XDG_CACHE_HOME:-$HOME/.cache}/raftkv/etcd-reference"
}
dest=$(pick_dest "${1:-}")
if [ -x "$dest/usr/bin/etcd" ] && [ -x "$dest/usr/bin/etcdctl" ]; then
  echo "$dest/usr/bin/etcd"; echo "$dest/usr/bin/etcdctl"; exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"
if ! apt-get download etcd-server etcd-client >/dev/null 2>&1; then
  apt-get update -qq >/dev/null
  apt-get download etcd-server etcd-client >/dev/null
fi
mkdir -p "$dest"
for deb in ./*.deb; do dpkg -x "$deb" "$dest"; done
"$dest/usr/bin/etcd" --version | head -1 >&2
echo "$dest/usr/bin/etcd"; echo "$dest/usr/bin/etcdctl"
