#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (package `chromium`) if no chromium is on PATH;
# `make report-check` uses it to open the reports and check every image loads, and the browser
# test of `loopscale serve` (tests/serve.rs) to load the dashboard; CI (.ci/run) runs this script.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  echo "chromium: $(chromium --version 2>/dev/null || echo present)"
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium.sh: no apt-get here; install Chromium yourself (it must be on PATH as 'chromium')" >&2
  exit 1
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends chromium
echo "chromium: $(chromium --version)"
