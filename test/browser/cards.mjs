// Renders pg_herald's chat messages as their targets show them, in headless
// Chromium (Debian's /usr/bin/chromium), for test/t/032_cards.pl and the
// README's pictures (scripts/screenshots.sh).  It asserts nothing: it
// reports what a person would see, and the TAP test decides.
//
//   node test/browser/cards.mjs REQUEST.json
//
// REQUEST.json: {"cards": [{"kind": K, "payload": BODY, "screenshot": FILE,
// "width": W}, ...]}, BODY the JSON body a channel of kind K received:
//
//   slack        Block Kit: the blocks pg_herald sends (header, section with
//                text and fields, context, actions with link buttons,
//                divider), drawn by the small renderer below, with Slack's
//                mrkdwn (*bold*, _italic_, ~strike~, `code`, <url|label>,
//                &lt; &gt; &amp;).
//   teams        the Adaptive Card of the Workflows attachment, rendered by
//                Microsoft's own renderer (npm adaptivecards, pinned in
//                package-lock.json) in a Teams-like message.
//   google_chat  the message text (Chat's *bold*, _italic_, ~strike~,
//                `code`, <url|label>) and its cardsV2 (card header,
//                sections, textParagraph, decoratedText, buttonList with
//                openLink buttons, divider), drawn by the renderer below.
//
// Prints one JSON line: {"ok": true, "cards": [{"kind", "title" (as drawn:
// Slack's header block, the card's header or the text's bold first line in
// Google Chat, the first TextBlock in Teams), "text", "buttons": [{"label",
// "url"}], "unknown": [block or widget types not drawn; for Teams, the
// renderer's parse and validation errors], "width", "height"}]}.  A button's url is the one a click opens:
// for Teams, each button is clicked and the URL its Action.OpenUrl asks
// the host to open is recorded (nothing is opened).  The page loads nothing
// from the network: every request but the page's own is refused, and
// reported in "blocked".
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { launchChromium } from './chromium.mjs';

const STEP_MS = 15000;
const require = createRequire(import.meta.url);
const adaptiveCardsJs = require.resolve('adaptivecards/dist/adaptivecards.min.js');
const adaptiveCardsCss = require.resolve('adaptivecards/dist/adaptivecards.css');

// Looks of each target, close enough to recognise it.
const STYLE = `
body { margin: 0; background: #fff; font-family: "Liberation Sans", Arial, sans-serif; }
.message { display: flex; gap: 10px; padding: 16px 20px; box-sizing: border-box; }
.avatar { flex: none; width: 36px; height: 36px; border-radius: 6px; background: #336791;
          color: #fff; font: bold 15px/36px "Liberation Sans", Arial, sans-serif; text-align: center; }
.bubble { flex: 1; min-width: 0; }
.who { font-size: 15px; font-weight: bold; color: #1d1c1d; margin-bottom: 4px; }
.who .badge { font-size: 10px; font-weight: bold; color: #616061; background: #e8e8e8;
              border-radius: 2px; padding: 1px 3px; margin-left: 4px; vertical-align: 2px; }

.slack { color: #1d1c1d; font-size: 15px; line-height: 1.46668; }
.slack .s-header { font-size: 18px; font-weight: 900; margin: 4px 0 8px; }
.slack .s-section { margin: 4px 0 8px; white-space: pre-wrap; overflow-wrap: anywhere; }
.slack .s-fields { display: grid; grid-template-columns: 1fr 1fr; gap: 8px 16px; margin-top: 8px;
                   white-space: pre-wrap; }
.slack .s-context { font-size: 12px; color: #616061; margin: 4px 0 8px; white-space: pre-wrap; }
.slack .s-actions { display: flex; flex-wrap: wrap; gap: 8px; margin: 8px 0 4px; }
.slack .s-button { display: inline-block; font-size: 15px; font-weight: bold; color: #1d1c1d;
                   text-decoration: none; border: 1px solid #bbbabb; border-radius: 4px;
                   padding: 0 12px; line-height: 34px; background: #fff; }
.slack .s-button.primary { background: #007a5a; border-color: #007a5a; color: #fff; }
.slack .s-button.danger { background: #e01e5a; border-color: #e01e5a; color: #fff; }
.slack .s-divider { border: 0; border-top: 1px solid #dddddd; margin: 8px 0; }
.slack code { font-family: monospace; font-size: 12px; color: #e01e5a; background: #f6f6f6;
              border: 1px solid #dddddd; border-radius: 3px; padding: 1px 3px; }
.slack a.s-link, .chat a.c-link { color: #1264a3; text-decoration: none; }

.teams-frame { background: #f5f5f5; }
.teams-frame .bubble { background: #fff; border-radius: 4px; padding: 8px 16px 12px;
                       box-shadow: 0 1px 2px rgba(0,0,0,.14); }
.teams-frame .avatar { border-radius: 50%; }
.teams-frame .who { font-size: 12px; font-weight: normal; color: #616161; }
.teams-frame .who b { color: #242424; margin-right: 6px; }

.chat { color: #1f1f1f; font-size: 14px; line-height: 20px; font-family: Roboto, "Liberation Sans", Arial, sans-serif; }
.chat .avatar { border-radius: 50%; }
.chat .c-text { white-space: pre-wrap; overflow-wrap: anywhere; margin-bottom: 8px; }
.chat .c-card { border: 1px solid #dadce0; border-radius: 8px; max-width: 520px; overflow: hidden; }
.chat .c-card-header { display: flex; gap: 12px; align-items: center; padding: 16px; }
.chat .c-card-title { font-size: 16px; font-weight: 500; }
.chat .c-card-subtitle { font-size: 12px; color: #5f6368; }
.chat .c-section { padding: 8px 16px; }
.chat .c-section + .c-section { border-top: 1px solid #dadce0; }
.chat .c-section-header { font-size: 14px; font-weight: 500; color: #5f6368; margin-bottom: 4px; }
.chat .c-widget { margin: 8px 0; }
.chat .c-top { font-size: 12px; color: #5f6368; }
.chat .c-bottom { font-size: 12px; color: #5f6368; }
.chat .c-buttons { display: flex; flex-wrap: wrap; gap: 8px; }
.chat .c-button { display: inline-block; font-size: 14px; font-weight: 500; color: #fff;
                  background: #1a73e8; border-radius: 4px; padding: 0 16px; line-height: 36px;
                  text-decoration: none; }
.chat .c-divider { border: 0; border-top: 1px solid #dadce0; margin: 8px 0; }
.chat code { font-family: monospace; background: #f1f3f4; border-radius: 3px; padding: 0 3px; }
`;

// The renderers, run in the page.  Each returns {title, unknown} and
// builds the message into #root.
function renderInPage({ kind, payload }) {
	const root = document.getElementById('root');
	const unknown = [];
	const esc = (s) => String(s ?? '').replace(/[&<>"']/g,
		(c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
	const safeUrl = (u) => (/^(https?|mailto):/i.test(u) ? u : '#');
	// Slack's mrkdwn and Chat's text format: the same marks; <url|label>
	// links; text between them is escaped by the sender (&lt; &gt; &amp;).
	const marks = (text, linkClass) => {
		const out = [];
		const re = /<([^<>|]+)(?:\|([^<>]*))?>/g;
		let last = 0;
		let m;
		const plain = (s) => esc(s.replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&'))
			.replace(/`([^`\n]+)`/g, '<code>$1</code>')
			.replace(/(^|[\s(])\*([^*\n]+)\*(?=$|[\s).,:;!?])/g, '$1<b>$2</b>')
			.replace(/(^|[\s(])_([^_\n]+)_(?=$|[\s).,:;!?])/g, '$1<i>$2</i>')
			.replace(/(^|[\s(])~([^~\n]+)~(?=$|[\s).,:;!?])/g, '$1<s>$2</s>');
		while ((m = re.exec(text)) !== null) {
			out.push(plain(text.slice(last, m.index)));
			const url = m[1].replace(/&amp;/g, '&');
			const label = m[2] !== undefined ? m[2] : url;
			out.push(`<a class="${linkClass}" href="${esc(safeUrl(url))}">${plain(label)}</a>`);
			last = re.lastIndex;
		}
		out.push(plain(text.slice(last)));
		return out.join('');
	};
	const chrome = (cls, name, badge, body) => {
		root.className = cls;
		root.innerHTML = `<div class="message"><div class="avatar">pg</div><div class="bubble">
			<div class="who">${esc(name)}${badge}</div><div class="content"></div></div></div>`;
		root.querySelector('.content').append(...body);
	};
	// the text of the first element the selector finds, as drawn
	const shown = (selector) => {
		const e = root.querySelector(selector);
		return e ? e.innerText.trim() : null;
	};
	const el = (tag, cls, html) => {
		const e = document.createElement(tag);
		if (cls)
			e.className = cls;
		if (html !== undefined)
			e.innerHTML = html;
		return e;
	};

	if (kind === 'slack') {
		const body = [];
		for (const b of payload.blocks || []) {
			const text = (t) => (t && t.type === 'mrkdwn' ? marks(t.text || '', 's-link') : esc(t ? t.text : ''));
			if (b.type === 'header') {
				body.push(el('div', 's-header', esc(b.text ? b.text.text : '')));
			} else if (b.type === 'section') {
				const s = el('div', 's-section', b.text ? text(b.text) : '');
				if (b.fields) {
					const f = el('div', 's-fields');
					for (const field of b.fields)
						f.append(el('div', 's-field', text(field)));
					s.append(f);
				}
				if (b.accessory)
					unknown.push('section.accessory');
				body.push(s);
			} else if (b.type === 'context') {
				body.push(el('div', 's-context', (b.elements || []).map((e) => {
					if (e.type !== 'mrkdwn' && e.type !== 'plain_text')
						unknown.push('context.' + e.type);
					return text(e);
				}).join(' ')));
			} else if (b.type === 'actions') {
				const a = el('div', 's-actions');
				for (const e of b.elements || []) {
					if (e.type !== 'button') {
						unknown.push('actions.' + e.type);
						continue;
					}
					const btn = el('a', 's-button' + (e.style ? ' ' + e.style : ''), esc(e.text ? e.text.text : ''));
					btn.href = e.url ? safeUrl(e.url) : '#';
					btn.dataset.button = '1';
					a.append(btn);
				}
				body.push(a);
			} else if (b.type === 'divider') {
				body.push(el('hr', 's-divider'));
			} else {
				unknown.push(b.type);
			}
		}
		if (!(payload.blocks || []).length)
			body.push(el('div', 's-section', marks(payload.text || '', 's-link')));
		chrome('slack', 'pg_herald', '<span class="badge">APP</span>', body);
		return { title: shown('.s-header'), unknown };
	}

	if (kind === 'google_chat') {
		const body = [];
		if (payload.text)
			body.push(el('div', 'c-text', marks(payload.text, 'c-link')));
		// textParagraph and decoratedText take a little HTML: <b>, <i>, <u>,
		// <s>, <br>, <a href>; anything else is shown as text
		const chatHtml = (s) => esc(s)
			.replace(/&lt;(\/?)(b|i|u|s|br)\s*\/?&gt;/g, '<$1$2>')
			.replace(/&lt;a href=&quot;(https?:[^"&]*)&quot;&gt;(.*?)&lt;\/a&gt;/g, '<a class="c-link" href="$1">$2</a>');
		for (const c of payload.cardsV2 || []) {
			const card = el('div', 'c-card');
			const def = c.card || {};
			if (def.header) {
				const h = el('div', 'c-card-header');
				h.append(el('div', '', `<div class="c-card-title">${esc(def.header.title)}</div>`
					+ (def.header.subtitle ? `<div class="c-card-subtitle">${esc(def.header.subtitle)}</div>` : '')));
				card.append(h);
			}
			for (const s of def.sections || []) {
				const sec = el('div', 'c-section');
				if (s.header)
					sec.append(el('div', 'c-section-header', esc(s.header)));
				for (const w of s.widgets || []) {
					const wd = el('div', 'c-widget');
					if (w.textParagraph) {
						wd.innerHTML = chatHtml(w.textParagraph.text);
					} else if (w.decoratedText) {
						const d = w.decoratedText;
						wd.innerHTML = (d.topLabel ? `<div class="c-top">${esc(d.topLabel)}</div>` : '')
							+ `<div>${chatHtml(d.text)}</div>`
							+ (d.bottomLabel ? `<div class="c-bottom">${esc(d.bottomLabel)}</div>` : '');
					} else if (w.buttonList) {
						const list = el('div', 'c-buttons');
						for (const b of w.buttonList.buttons || []) {
							const link = b.onClick && b.onClick.openLink;
							if (!link)
								unknown.push('button.onClick');
							const btn = el('a', 'c-button', esc(b.text));
							btn.href = link ? safeUrl(link.url) : '#';
							btn.dataset.button = '1';
							list.append(btn);
						}
						wd.append(list);
					} else if (w.divider !== undefined) {
						wd.append(el('hr', 'c-divider'));
					} else {
						unknown.push(Object.keys(w).join(','));
					}
					sec.append(wd);
				}
				card.append(sec);
			}
			body.push(card);
		}
		chrome('chat', 'pg_herald', '<span class="badge">App</span>', body);
		return { title: shown('.c-card-title') ?? shown('.c-text > b:first-child'), unknown };
	}

	if (kind === 'teams') {
		const att = (payload.attachments || [])
			.find((a) => a.contentType === 'application/vnd.microsoft.card.adaptive');
		const card = new AdaptiveCards.AdaptiveCard();
		card.hostConfig = new AdaptiveCards.HostConfig({
			fontFamily: '"Segoe UI", "Liberation Sans", Arial, sans-serif',
			actions: { actionsOrientation: 'horizontal', buttonSpacing: 8, maxActions: 10 },
		});
		window.heraldOpened = [];
		card.onExecuteAction = (action) => {
			if (action instanceof AdaptiveCards.OpenUrlAction)
				window.heraldOpened.push(action.url);
		};
		// what the renderer could not parse or finds invalid
		const errors = [];
		const context = new AdaptiveCards.SerializationContext();
		card.parse(att ? att.content : {}, context);
		for (let i = 0; i < context.eventCount; i++)
			errors.push(context.getEventAt(i).message);
		for (const e of card.validateProperties().validationEvents)
			errors.push(e.message);
		const rendered = card.render();
		chrome('teams-frame', '', '', [rendered]);
		root.querySelector('.who').innerHTML = '<b>Workflows</b>';
		return { title: shown('.ac-textBlock'), unknown: errors };
	}
	throw new Error('unknown kind ' + kind);
}

const request = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const browser = await launchChromium();
const results = [];
try {
	for (const c of request.cards) {
		const context = await browser.newContext({
			viewport: { width: c.width || 600, height: 400 }, deviceScaleFactor: 1,
		});
		const page = await context.newPage();
		page.setDefaultTimeout(STEP_MS);
		const blocked = [];
		await page.route('**/*', (route) => {
			blocked.push(route.request().url());
			return route.abort();
		});
		await page.setContent(`<!DOCTYPE html><html><head><meta charset="utf-8"><style>${STYLE}</style></head>`
			+ '<body><div id="root"></div></body></html>');
		if (c.kind === 'teams') {
			await page.addStyleTag({ content: readFileSync(adaptiveCardsCss, 'utf8') });
			await page.addScriptTag({ content: readFileSync(adaptiveCardsJs, 'utf8') });
		}
		const drawn = await page.evaluate(renderInPage, { kind: c.kind, payload: c.payload });
		// the picture first: a click leaves its button focused
		if (c.screenshot)
			await page.locator('#root .message').screenshot({ path: c.screenshot });
		// what is shown: the text, the buttons and where each one leads
		const buttons = [];
		if (c.kind === 'teams') {
			const pushButtons = await page.$$('#root button.ac-pushButton');
			for (const b of pushButtons) {
				const before = await page.evaluate(() => window.heraldOpened.length);
				await b.click();
				const opened = await page.evaluate((n) => window.heraldOpened.slice(n), before);
				buttons.push({ label: (await b.innerText()).trim(), url: opened[0] ?? null });
			}
		} else {
			for (const b of await page.$$('#root [data-button]'))
				buttons.push({ label: (await b.innerText()).trim(), url: await b.getAttribute('href') });
		}
		const box = await page.evaluate(() => {
			const r = document.querySelector('#root .message').getBoundingClientRect();
			return { width: Math.round(r.width), height: Math.round(r.height), text: document.getElementById('root').innerText };
		});
		results.push({ kind: c.kind, title: drawn.title, unknown: drawn.unknown, text: box.text,
			buttons, width: box.width, height: box.height, blocked });
		await context.close();
	}
	process.stdout.write(JSON.stringify({ ok: true, cards: results }) + '\n');
} catch (e) {
	process.stdout.write(JSON.stringify({ ok: false, error: String(e && e.stack || e), cards: results }) + '\n');
	process.exitCode = 1;
} finally {
	await browser.close();
}
