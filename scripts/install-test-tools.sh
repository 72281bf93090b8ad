#!/usr/bin/env bash
# Installs the Debian packages the interop tests (test/interop.test.ts, test/interop-resume.test.ts) drive, if missing:
# Chromium and Python's websockets + msgpack. Idempotent; needs root or sudo and Debian's mirrors.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
/usr/bin/python3 -c 'import websockets, msgpack' 2>/dev/null || need+=(python3-websockets python3-msgpack)
[ ${#need[@]} -eq 0 ] && exit 0
echo "installing ${need[*]} (Debian packages, for the interop tests)" >&2
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
