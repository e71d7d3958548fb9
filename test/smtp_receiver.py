#!/usr/bin/env python3
"""Local SMTP receiver for the pg_herald tests and demo.

It listens on 127.0.0.1 only, speaks plain SMTP (no STARTTLS, no AUTH:
libcurl uses STARTTLS only when it is offered and logs in only when AUTH
is), and records every message it accepts as one JSON line in a log file.

A recipient whose local part is "status-NNN" (status-550@example.com) is
refused at RCPT with reply code NNN (400..599), so a test picks a failure
just by choosing an address; libcurl then fails the whole transfer and
nothing is recorded.

Log line format (one line per message, written in one piece before the
message is acknowledged, so a client that got its "250" finds its line in
the log):

    {"n": 1, "at": 1700000000.123, "mail_from": "alerts@example.com",
     "rcpt_tos": ["ops@example.com"], "data": "From: ...\\r\\n..."}

"data" is the message as received (dot-stuffing undone), decoded as UTF-8
with undecodable bytes replaced.  Readers should ignore a last line without
its newline: it is being written.

Usage:
    smtp_receiver.py --log FILE [--port 0] [--port-file FILE] [--max-seconds 3600]

Port 0 picks a free port; the port actually bound is written to --port-file
(atomically) once the server accepts connections.  The receiver exits by
itself after --max-seconds, and cleanly on SIGTERM or SIGINT.

Needs aiosmtpd (Debian package python3-aiosmtpd).
"""

import argparse
import asyncio
import json
import os
import re
import signal
import sys
import time

from aiosmtpd.smtp import SMTP

# the HTTP receiver's log: the same JSON lines, numbered in arrival order
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from receiver import RequestLog  # noqa: E402

STATUS_ADDRESS = re.compile(r"^status-([45][0-9][0-9])@", re.IGNORECASE)


class Handler:
    """aiosmtpd hooks: refuse status-NNN recipients, record each message."""

    def __init__(self, log):
        self.log = log

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        match = STATUS_ADDRESS.match(address)
        if match:
            code = match.group(1)
            return "%s %s.0.0 refused as asked by the address" % (code, code[0])
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        if isinstance(content, bytes):
            content = content.decode("utf-8", errors="replace")
        self.log.record({
            "at": time.time(),
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": content,
        })
        return "250 OK"


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


async def serve(args, log):
    loop = asyncio.get_running_loop()
    handler = Handler(log)
    # A fixed host name: aiosmtpd would otherwise look up the FQDN, which
    # can take seconds without a resolver.
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="herald-test-smtp", enable_SMTPUTF8=True,
                     decode_data=False),
        host="127.0.0.1", port=args.port, reuse_address=True)

    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    loop.call_later(args.max_seconds, stopping.set)

    if args.port_file:
        write_port_file(args.port_file, server.sockets[0].getsockname()[1])

    await stopping.wait()
    server.close()
    # Newer Pythons wait for open connections here; a client may keep one.
    try:
        await asyncio.wait_for(server.wait_closed(), 2)
    except asyncio.TimeoutError:
        pass


def main():
    parser = argparse.ArgumentParser(description="pg_herald test SMTP receiver")
    parser.add_argument("--log", required=True, help="JSON-lines message log (appended)")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 = any free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--max-seconds", type=float, default=3600,
                        help="exit after this many seconds (default 3600)")
    args = parser.parse_args()

    log = RequestLog(args.log)
    try:
        asyncio.run(serve(args, log))
    finally:
        log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
