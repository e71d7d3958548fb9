// Headless Chromium for the browser tests (decide.mjs, cards.mjs): Debian's
// /usr/bin/chromium (or $HERALD_CHROMIUM), driven by playwright-core, with
// --headless --no-sandbox --disable-gpu --disable-background-networking
// --disable-dev-shm-usage; starting it may take up to 60 s.
import { chromium } from 'playwright-core';

export function launchChromium() {
	return chromium.launch({
		executablePath: process.env.HERALD_CHROMIUM || '/usr/bin/chromium',
		headless: true,
		timeout: 60000,
		args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
			'--disable-dev-shm-usage'],
	});
}
