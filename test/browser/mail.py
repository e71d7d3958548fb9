#!/usr/bin/env python3
"""The messages test/smtp_receiver.py received, taken apart as a mail
client would: for test/t/031_browser.pl.

    mail.py SMTP_LOG [--html-dir DIR]

Prints one JSON object a line per complete message of the log (a last line
still being written is left out):

    {"n": 1, "rcpt_tos": [...], "subject": "...", "content_type": "...",
     "text": "<the text/plain part, transfer encoding undone>",
     "html": "<the text/html part, likewise>",
     "html_links": [{"href": "...", "text": "..."}],
     "text_urls": ["http://..."],
     "html_file": "DIR/mail-1.html"}

The parts are found by walking the MIME tree with Python's email package
(quoted-printable and base64 decoded, charsets applied); links are the
href of every <a> of the HTML part (entities decoded) with the text inside
it; text URLs are every http(s) URL of the plain part.  With --html-dir,
each HTML part is also written to DIR/mail-N.html for a browser.
"""

import argparse
import email
import email.policy
import html.parser
import json
import os
import re
import sys

URL = re.compile(r"https?://[^\s<>\"']+")


class Links(html.parser.HTMLParser):
    """Collects <a href> with the text inside each."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links = []
        self._open = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            href = dict(attrs).get("href")
            self._open.append({"href": href, "text": ""})

    def handle_data(self, data):
        for link in self._open:
            link["text"] += data

    def handle_endtag(self, tag):
        if tag == "a" and self._open:
            link = self._open.pop()
            link["text"] = " ".join(link["text"].split())
            if link["href"] is not None:
                self.links.append(link)


def part_text(part):
    return part.get_content() if part is not None else None


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("log")
    parser.add_argument("--html-dir")
    args = parser.parse_args()

    with open(args.log, "rb") as log:
        for line in log:
            if not line.endswith(b"\n"):
                break
            entry = json.loads(line)
            msg = email.message_from_string(entry["data"], policy=email.policy.default)
            plain = msg.get_body(preferencelist=("plain",))
            rich = msg.get_body(preferencelist=("html",))
            text = part_text(plain)
            html_part = part_text(rich)
            links = []
            if html_part is not None:
                p = Links()
                p.feed(html_part)
                p.close()
                links = p.links
            out = {
                "n": entry["n"],
                "rcpt_tos": entry.get("rcpt_tos"),
                "subject": str(msg.get("subject", "")),
                "content_type": msg.get_content_type(),
                "text": text,
                "html": html_part,
                "html_links": links,
                "text_urls": [u.rstrip(".,;:)]") for u in URL.findall(text or "")],
            }
            if args.html_dir and html_part is not None:
                path = os.path.join(args.html_dir, "mail-%d.html" % entry["n"])
                with open(path, "w", encoding="utf-8") as f:
                    f.write(html_part)
                out["html_file"] = path
            print(json.dumps(out, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
