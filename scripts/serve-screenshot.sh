#!/usr/bin/env bash
# A screenshot of `loopscale serve` in headless Chromium (scripts/install-chromium.sh): serves
# SOURCE on a free port, loads PAGE (default: the overview) and writes OUT.png. How
# docs/serve-overview.png was made, from the quickstart sweep while it trained:
#   ./target/release/loopscale run sweeps/quickstart.toml --jobs 1 &
#   scripts/serve-screenshot.sh sweeps/quickstart.toml docs/serve-overview.png
# Usage: scripts/serve-screenshot.sh SOURCE OUT.png [PAGE] [WIDTHxHEIGHT]
set -euo pipefail
source=$1 out=$2 page=${3:-} size=${4:-1400x700}
bin=${LOOPSCALE:-./target/release/loopscale}
command -v chromium >/dev/null || { echo "serve-screenshot: chromium not found; run scripts/install-chromium.sh" >&2; exit 1; }
urlfile=$(mktemp) profile=$(mktemp -d)
"$bin" serve "$source" --port 0 >"$urlfile" 2>/dev/null &
server=$!
trap 'kill $server 2>/dev/null; rm -rf "$urlfile" "$profile"' EXIT
for _ in $(seq 50); do [ -s "$urlfile" ] && break; sleep 0.1; done
url=$(head -1 "$urlfile")
[ -n "$url" ] || { echo "serve-screenshot: the server printed no URL" >&2; exit 1; }
chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
  --user-data-dir="$profile" --timeout=5000 --window-size="${size/x/,}" \
  --screenshot="$(realpath -m "$out")" "$url$page" >/dev/null 2>&1
echo "serve-screenshot: $out ($url$page)"
