#!/usr/bin/env bash
# System packages the test suite needs (Debian). Installs only what is missing.
set -euo pipefail
need=()
# (the browser tests' chromium is added here by the browser issue)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"
fi
