#!/usr/bin/env bash
# install-chromium.sh — Debian's chromium for the playground's browser test (test/server/playground.test.ts,
# driven by playwright-core with executablePath /usr/bin/chromium). Needs root and Debian's apt
# repositories (CI has both); nothing is downloaded by playwright itself.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  echo "== chromium: $(/usr/bin/chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "install-chromium.sh: must run as root to apt-get install chromium" >&2
  exit 1
fi
echo "== installing Debian's chromium (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
echo "== chromium: $(/usr/bin/chromium --version)"
