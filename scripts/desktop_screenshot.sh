#!/usr/bin/env bash
# The app as a desktop shows it: under Xvfb with a window manager (openbox) that draws the
# title bar, so the window's own icon and title are visible. Writes $1 (a PNG).
# Needs: apt-get install xvfb openbox imagemagick. Not run by the tests.
set -euo pipefail
out="${1:?usage: scripts/desktop_screenshot.sh OUT.png}"
cd "$(dirname "$0")/.."
display=":$((RANDOM % 400 + 100))"
Xvfb "$display" -screen 0 1366x768x24 -nolisten tcp &
xvfb=$!
trap 'kill $app $wm $xvfb 2>/dev/null || true' EXIT
sleep 1
DISPLAY="$display" openbox &
wm=$!
sleep 1
DISPLAY="$display" QT_QPA_PLATFORM=xcb .venv/bin/freezestudio \
    freezestudio/resources/demo/cnn_transfer.keras &
app=$!
sleep "${WAIT_S:-25}"
DISPLAY="$display" import -window root "$out"
echo "wrote $out"
