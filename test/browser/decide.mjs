// Drives headless Chromium (Debian's /usr/bin/chromium) through a decision
// page of pg_herald for test/t/031_browser.pl, and reports what a person
// would see.  It asserts nothing: the TAP test decides.
//
//   node test/browser/decide.mjs
//
// Commands arrive on stdin, one JSON object a line; each gets one JSON line
// on stdout ({"ok": true, ...} or {"ok": false, "error": "..."}), so that
// the test can look at the database between two steps.
//
//   {"cmd": "open", "url": U, "width": 390, "screenshot": FILE|null}
//       A phone: a mobile viewport W px wide (the page's meta viewport
//       applies, as on a phone), 844 px high, device scale 2.  Reports the
//       status and headers of the page, its text, the controls of its POST
//       form (radio buttons or a select, text fields, the submit button),
//       document.documentElement.scrollWidth and every request the page made
//       (its own URL included).  Screenshot of the whole page when asked.
//   {"cmd": "submit", "choice": LABEL, "text": TEXT, "screenshot": FILE|null}
//       Picks the choice whose label is LABEL, types TEXT into the form's
//       first textarea (or its first text field), clicks the submit button
//       and reports the page it lands on; keeps the POST (body and headers).
//   {"cmd": "back_resubmit"}
//       Goes back to the form and, when it is there, submits it again as it
//       is; reports the page shown after going back (and whether its hidden
//       fields are those submitted before) and the one after.
//   {"cmd": "replay"}
//       Sends the kept POST again, byte for byte (the browser's "resend").
//   {"cmd": "email", "file": HTML_FILE, "width": 600, "screenshot": FILE}
//       Renders an email's HTML part from a file at W px (no network: any
//       other request is refused and reported); reports its links.
//   {"cmd": "quit"}
//
// Chromium runs with --headless --no-sandbox --disable-gpu
// --disable-background-networking; every wait is bounded (15 s a step).
import { createInterface } from 'node:readline';
import { pathToFileURL } from 'node:url';
import { launchChromium } from './chromium.mjs';

const STEP_MS = 15000;

const browser = await launchChromium();

let phone = null;		// the phone's context and page
let page = null;
let requests = [];
let lastPost = null;	// { url, body, headers } of the last form POST
let lastChoice = null;

function reply(obj) {
	process.stdout.write(JSON.stringify(obj) + '\n');
}

// What the page shows and what its POST form holds.
async function observe(p) {
	return p.evaluate(() => {
		const form = Array.from(document.forms)
			.find((f) => (f.getAttribute('method') || '').toLowerCase() === 'post') || null;
		const labelOf = (el) => {
			const labels = el.labels ? Array.from(el.labels) : [];
			const text = labels.map((l) => l.innerText).join(' ').trim();
			return text || el.getAttribute('aria-label') || '';
		};
		const controls = [];
		if (form) {
			for (const el of form.elements) {
				const tag = el.tagName.toLowerCase();
				const c = { tag, type: el.type || '', name: el.name || '', label: labelOf(el) };
				if (tag === 'select') {
					c.options = Array.from(el.options).map((o) => ({
						label: o.label || o.text, value: o.value, selected: o.selected,
					}));
				} else if (el.type === 'radio' || el.type === 'checkbox') {
					c.value = el.value;
					c.checked = el.checked;
				} else if (el.type === 'hidden') {
					c.has_value = el.value !== '';
				} else {
					c.value = el.value;
				}
				controls.push(c);
			}
		}
		const viewport = document.querySelector('meta[name="viewport"]');
		return {
			url: location.href,
			title: document.title,
			text: document.body ? document.body.innerText : '',
			form: form ? { action: form.getAttribute('action'), controls } : null,
			scroll_width: document.documentElement.scrollWidth,
			client_width: document.documentElement.clientWidth,
			viewport_meta: viewport ? viewport.getAttribute('content') : null,
		};
	});
}

// The POST form's submit button (a button or an input of type submit).
function submitButton(p) {
	return p.locator('form[method="post" i] button:not([type]), '
		+ 'form[method="post" i] button[type="submit"], '
		+ 'form[method="post" i] input[type="submit"]').first();
}

async function pickChoice(p, label) {
	const radio = p.locator('form[method="post" i] input[type="radio"]');
	if (await radio.count() > 0) {
		await p.getByRole('radio', { name: label, exact: true }).check({ timeout: STEP_MS });
		return;
	}
	const select = p.locator('form[method="post" i] select').first();
	await select.selectOption({ label }, { timeout: STEP_MS });
}

async function typeText(p, text) {
	let field = p.locator('form[method="post" i] textarea').first();
	if (await field.count() === 0) {
		field = p.locator('form[method="post" i] input[type="text"]').first();
	}
	// typed key by key, as a person would
	await field.click({ timeout: STEP_MS });
	await field.fill('');
	await field.pressSequentially(text, { timeout: STEP_MS });
}

async function pageOf(response) {
	const headers = response ? await response.allHeaders() : {};
	return {
		status: response ? response.status() : null,
		headers: {
			'content-type': headers['content-type'] || null,
			'content-security-policy': headers['content-security-policy'] || null,
			'x-frame-options': headers['x-frame-options'] || null,
			'cache-control': headers['cache-control'] || null,
		},
		...(await observe(page)),
	};
}

// Clicks the submit button and waits for the page the POST leads to.
async function submitForm() {
	const posted = page.waitForRequest((r) => r.method() === 'POST', { timeout: STEP_MS });
	const landed = page.waitForNavigation({ timeout: STEP_MS, waitUntil: 'load' });
	await submitButton(page).click({ timeout: STEP_MS, noWaitAfter: true });
	const request = await posted;
	const response = await landed;
	lastPost = {
		url: request.url(),
		body: request.postData(),
		headers: await request.allHeaders(),
	};
	return pageOf(response);
}

const commands = {
	async open({ url, width = 390, screenshot = null }) {
		if (phone) {
			await phone.close();
		}
		phone = await browser.newContext({
			viewport: { width, height: 844 },
			deviceScaleFactor: 2,
			isMobile: true,
			hasTouch: true,
			javaScriptEnabled: true,
		});
		phone.setDefaultTimeout(STEP_MS);
		page = await phone.newPage();
		requests = [];
		page.on('request', (r) => requests.push(r.method() + ' ' + r.url()));
		const response = await page.goto(url, { timeout: STEP_MS, waitUntil: 'load' });
		const seen = await pageOf(response);
		if (screenshot) {
			await page.screenshot({ path: screenshot, fullPage: true, timeout: STEP_MS });
		}
		return { ...seen, requests };
	},

	async submit({ choice, text, screenshot = null }) {
		await pickChoice(page, choice);
		await typeText(page, text);
		lastChoice = choice;
		const seen = await submitForm();
		if (screenshot) {
			await page.screenshot({ path: screenshot, fullPage: true, timeout: STEP_MS });
		}
		return { ...seen, post: { url: lastPost.url, content_type: lastPost.headers['content-type'] || null, origin: lastPost.headers.origin || null } };
	},

	async back_resubmit() {
		const response = await page.goBack({ timeout: STEP_MS, waitUntil: 'load' });
		const back = await observe(page);
		back.status = response ? response.status() : null;
		// whether the page came back with the form token that was submitted
		const submitted = new URLSearchParams(lastPost.body || '');
		const hidden = await page.evaluate(() => Array.from(document.querySelectorAll(
			'form[method="post" i] input[type="hidden"]')).map((i) => [i.name, i.value]));
		back.same_hidden_fields = hidden.every(([name, value]) => submitted.get(name) === value);
		if (!back.form || await submitButton(page).count() === 0) {
			return { back, resubmitted: false };
		}
		const after = await submitForm();
		return { back, resubmitted: true, after };
	},

	async replay() {
		if (!lastPost) {
			throw new Error('no POST to replay');
		}
		const headers = {};
		for (const name of ['content-type', 'origin', 'referer']) {
			if (lastPost.headers[name]) {
				headers[name] = lastPost.headers[name];
			}
		}
		const response = await phone.request.post(lastPost.url, {
			headers, data: lastPost.body ?? '', timeout: STEP_MS, maxRedirects: 0,
		});
		return { status: response.status(), body: await response.text() };
	},

	async email({ file, width = 600, screenshot = null }) {
		// a short viewport: the full-page screenshot is as tall as the email
		const context = await browser.newContext({ viewport: { width, height: 100 }, deviceScaleFactor: 1 });
		const blocked = [];
		const fileUrl = pathToFileURL(file).href;
		await context.route('**/*', (route) => {
			const u = route.request().url();
			if (u === fileUrl) {
				return route.continue();
			}
			blocked.push(u);
			return route.abort();
		});
		try {
			const p = await context.newPage();
			await p.goto(fileUrl, { timeout: STEP_MS, waitUntil: 'load' });
			const links = await p.evaluate(() => Array.from(document.querySelectorAll('a[href]'))
				.map((a) => ({ href: a.href, text: a.innerText.trim() })));
			const seen = await p.evaluate(() => ({
				text: document.body ? document.body.innerText : '',
				scroll_width: document.documentElement.scrollWidth,
			}));
			if (screenshot) {
				await p.screenshot({ path: screenshot, fullPage: true, timeout: STEP_MS });
			}
			return { ...seen, links, blocked };
		} finally {
			await context.close();
		}
	},
};

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
	if (line.trim() === '') {
		continue;
	}
	let command;
	try {
		command = JSON.parse(line);
	} catch (e) {
		reply({ ok: false, error: 'not JSON: ' + line.slice(0, 200) });
		continue;
	}
	if (command.cmd === 'quit') {
		break;
	}
	const run = commands[command.cmd];
	if (!run) {
		reply({ ok: false, error: 'unknown command ' + command.cmd });
		continue;
	}
	try {
		reply({ ok: true, ...(await run(command)) });
	} catch (e) {
		reply({ ok: false, error: String(e && e.message ? e.message : e).slice(0, 2000) });
	}
}
await browser.close();
