#!/usr/bin/env bash
# Opens each report (a directory holding index.html) in headless Chromium: takes a full-page
# screenshot (screenshot.png beside the report) and checks that every <img> loaded
# (naturalWidth > 0). The check runs on a copy of the page with a small script appended
# (the report itself has no scripts); the copy is removed afterwards.
# Usage: scripts/report-check.sh REPORT_DIR...
set -euo pipefail
command -v chromium >/dev/null || { echo "report-check: chromium not found; run scripts/install-chromium.sh" >&2; exit 1; }
status=0
for dir in "$@"; do
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/index.html" ] || { echo "report-check: $dir/index.html missing" >&2; status=1; continue; }
  profile=$(mktemp -d)
  flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
         --disable-background-networking --disable-component-update --disable-sync
         --hide-scrollbars --user-data-dir="$profile")
  check="$dir/.imgcheck.html"
  sed 's#</body>#<script>addEventListener("load",function(){for(const i of document.images){i.setAttribute("data-loaded",i.complete\&\&i.naturalWidth>0?"yes":"no")}document.body.setAttribute("data-checked","1")})</script></body>#' \
    "$dir/index.html" > "$check"
  dom=$(chromium "${flags[@]}" --virtual-time-budget=10000 --dump-dom "file://$check" 2>/dev/null)
  rm -f "$check"
  # Page height for the screenshot: the report's images plus its tables.
  chromium "${flags[@]}" --virtual-time-budget=10000 --window-size=1600,7000 \
    --screenshot="$dir/screenshot.png" "file://$dir/index.html" >/dev/null 2>&1
  rm -rf "$profile"
  total=$(grep -o '<img ' <<<"$dom" | wc -l)
  loaded=$(grep -o 'data-loaded="yes"' <<<"$dom" | wc -l)
  checked=$(grep -c 'data-checked="1"' <<<"$dom" || true)
  if [ "$checked" -ge 1 ] && [ "$total" -eq "$loaded" ] && [ -s "$dir/screenshot.png" ]; then
    echo "report-check: $dir/index.html: $loaded/$total images loaded; screenshot $dir/screenshot.png"
  else
    echo "report-check: FAILED $dir/index.html: $loaded/$total images loaded (page checked: $checked)" >&2
    status=1
  fi
done
exit $status
