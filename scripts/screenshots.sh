#!/usr/bin/env bash
# Regenerate the screenshots the README shows (docs/images/*.png): the
# decision page on a 390 px wide phone, its confirmation, and the email
# with its decision buttons, as headless Chromium renders them in the
# browser test (test/t/031_browser.pl); the Slack, Microsoft Teams and
# Google Chat messages of a threshold rule, rendered from the payloads the
# test receiver got (test/t/032_cards.pl).  Run as root from anywhere:
#
#   bash scripts/screenshots.sh
#
# Runs those two tests alone through test/run (which builds and installs
# first) with HERALD_SCREENSHOT_DIR set, then copies the PNGs into
# docs/images/ only when the tests passed.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
shots=$(mktemp -d "${TMPDIR:-/tmp}/pg_herald_screenshots.XXXXXX")
trap 'rm -rf "$shots"' EXIT
chmod 755 "$shots"
if [ "$(id -u)" -eq 0 ]; then
	chown postgres:postgres "$shots"
fi

HERALD_ONLY="031_browser 032_cards" HERALD_SCREENSHOT_DIR=$shots bash "$repo/test/run"

mkdir -p "$repo/docs/images"
pictures=(decision-page.png decision-recorded.png email.png slack.png teams.png google-chat.png)
for f in "${pictures[@]}"; do
	[ -s "$shots/$f" ] || { echo "screenshots.sh: the test left no $f" >&2; exit 1; }
	cp "$shots/$f" "$repo/docs/images/$f"
done
echo "screenshots.sh: docs/images/: ${pictures[*]}"
