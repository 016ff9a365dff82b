#!/usr/bin/env bash
# System packages the test suite needs (Debian). Installs only what is missing.
set -euo pipefail
need=()
# the browser tests (tests/e2e) drive Debian's chromium through Playwright
# (`playwright install` downloads browsers, which CI and offline machines cannot)
[ -x /usr/bin/chromium ] || need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
