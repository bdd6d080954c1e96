#!/usr/bin/env bash
# Render an fmct report (report.html) in headless Chromium and save a full-width screenshot, to check what a
# reader sees (tables, figures, verdict), not only the HTML text. Needs chromium (Debian: apt-get install chromium).
# Usage: scripts/report_screenshot.sh demo_out/report/report.html report.png [height_px]
set -euo pipefail
html=$(realpath "$1")
out=$(realpath -m "$2")
height=${3:-4000}
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1280,"$height" \
    --screenshot="$out" "file://$html" 2>/dev/null
echo "$out"
