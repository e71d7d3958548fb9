#!/usr/bin/env python3
"""Local HTTP receiver for the pg_herald tests and demo.

It listens on a loopback address only (127.0.0.1 unless --host names
another 127.x.y.z), records every request it receives as one JSON
line in a log file, and answers the way the request's query string asks, so
a test picks the behaviour of an endpoint just by choosing its URL:

    status=N         final status (default 200)
    fail_first=K     the first K requests with the same webhook-id header
                     (or, without that header, the same path and query)
                     are answered with fail_status, later ones with status
    fail_status=M    status used by fail_first (default 500)
    retry_after=S    add "Retry-After: S" to every non-2xx answer
    delay_ms=D       wait D milliseconds before answering (at most 60000)
    location=URL     add a Location header
    body=TEXT        response body (default "ok")
    binary=N         instead, a binary body of N bytes (NUL and invalid UTF-8),
                     Content-Type application/octet-stream (N at most 1 MB)
    header_bytes=N   add an "X-Padding" header with a value of N bytes (at
                     most 8 MB)

GET /_health answers 200 and is not recorded.

Log line format (one line per request, written in one piece before the
answer is sent, so a client that got its answer finds its line in the log):

    {"n": 1, "at": 1700000000.123, "method": "POST", "path": "/hook",
     "query": "status=200", "headers": {"webhook-id": "..."},
     "body": "...", "status": 200}

Readers should ignore a last line without its newline: it is being written.

Usage:
    receiver.py --log FILE [--port 0] [--port-file FILE] [--max-seconds 3600]
                [--tls-cert FILE --tls-key FILE]

With --tls-cert and --tls-key it speaks HTTPS (the certificate chain and its
key, PEM); a client that fails the handshake is not logged.

Port 0 picks a free port; the port actually bound is written to --port-file
(atomically) once the server accepts connections.  The receiver exits by
itself after --max-seconds, and cleanly on SIGTERM or SIGINT.

Python 3 standard library only.
"""

import argparse
import json
import os
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

MAX_DELAY_MS = 60000
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_BINARY_BYTES = 1024 * 1024
MAX_HEADER_BYTES = 8 * 1024 * 1024


class BadParameter(Exception):
    """A query-string parameter that the receiver cannot use."""


class RequestLog:
    """Append-only JSON-lines log; one write per line, under a lock."""

    def __init__(self, path):
        self._lock = threading.Lock()
        self._seq = 0
        # Unbuffered binary append: each line is handed to the kernel in one
        # write() call, so lines from concurrent requests never interleave.
        self._file = open(path, "ab", buffering=0)

    def record(self, entry):
        with self._lock:
            self._seq += 1
            line = {"n": self._seq}
            line.update(entry)
            data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
            while data:
                data = data[self._file.write(data):]
            return self._seq

    def close(self):
        with self._lock:
            self._file.close()


class FailureCounter:
    """Counts requests per idempotency key for fail_first."""

    def __init__(self):
        self._lock = threading.Lock()
        self._seen = {}

    def next(self, key):
        """Return how many requests with this key have arrived, this one included."""
        with self._lock:
            count = self._seen.get(key, 0) + 1
            self._seen[key] = count
            return count


def int_param(params, name, default, low, high):
    """Return an integer query parameter, checked against [low, high]."""
    values = params.get(name)
    if not values:
        return default
    raw = values[-1]
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter("%s=%r is not an integer" % (name, raw))
    if value < low or value > high:
        raise BadParameter("%s=%d is outside %d..%d" % (name, value, low, high))
    return value


def str_param(params, name, default):
    values = params.get(name)
    if not values:
        return default
    return values[-1]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body go out in separate writes: without TCP_NODELAY,
    # Nagle and delayed ACKs add ~40 ms to every answer on a reused connection
    disable_nagle_algorithm = True

    def version_string(self):
        return "herald-test-receiver"

    # Any method is handled the same way: do_GET, do_POST, do_PURGE, ...
    def __getattr__(self, name):
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def log_message(self, format, *args):
        """Stay quiet: the JSON log is the record."""

    def _read_body(self):
        """Read the request body (Content-Length or chunked) as bytes."""
        encoding = self.headers.get("Transfer-Encoding", "")
        if "chunked" in encoding.lower():
            chunks = []
            total = 0
            while True:
                size_line = self.rfile.readline(65537)
                if not size_line:
                    break
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    # Trailer section ends with an empty line.
                    while True:
                        trailer = self.rfile.readline(65537)
                        if trailer in (b"\r\n", b"\n", b""):
                            break
                    break
                total += size
                if total > MAX_BODY_BYTES:
                    raise ValueError("request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)  # CRLF after the chunk
            return b"".join(chunks)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        length = int(length)
        if length < 0 or length > MAX_BODY_BYTES:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length)

    def _answer(self, status, body, extra_headers=(), content_type="text/plain; charset=utf-8"):
        """Send one response, always framed so the connection can be reused."""
        self.send_response(status)
        for name, value in extra_headers:
            self.send_header(name, value)
        # 204 and 304 answers carry no body and, by HTTP rules, no length.
        if status in (204, 304):
            body = b""
        else:
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD" and body:
            self.wfile.write(body)

    def _record(self, received_at, path, query, headers, body, status):
        self.server.request_log.record({
            "at": received_at,
            "method": self.command,
            "path": path,
            "query": query,
            "headers": headers,
            "body": body.decode("utf-8", errors="replace"),
            "status": status,
        })

    def _serve(self):
        received_at = time.time()
        path, _, query = self.path.partition("?")
        self.server.arrival_log.record({"path": path})

        headers = {}
        for name, value in self.headers.items():
            name = name.lower()
            headers[name] = headers[name] + ", " + value if name in headers else value

        try:
            body = self._read_body()
        except (ValueError, OSError):
            # The framing is unknown: record, answer and drop the connection.
            self.close_connection = True
            self._record(received_at, path, query, headers, b"", 400)
            self._answer(400, b"unreadable request body\n")
            return

        if path == "/_health" and self.command == "GET":
            self._answer(200, b"ok")
            return

        extra = []
        content_type = "text/plain; charset=utf-8"
        try:
            params = parse_qs(query, keep_blank_values=True)
            status = int_param(params, "status", 200, 200, 599)
            fail_first = int_param(params, "fail_first", 0, 0, 1000000)
            fail_status = int_param(params, "fail_status", 500, 200, 599)
            retry_after = str_param(params, "retry_after", None)
            delay_ms = int_param(params, "delay_ms", 0, 0, 10 ** 9)
            location = str_param(params, "location", None)
            reply = str_param(params, "body", "ok").encode("utf-8")
            binary = int_param(params, "binary", None, 1, MAX_BINARY_BYTES)
            header_bytes = int_param(params, "header_bytes", 0, 0, MAX_HEADER_BYTES)
            if binary is not None:
                # NUL bytes and bytes that are never valid UTF-8
                reply = (b"\x00\xff\xfe\x89PNG\r\n" * (binary // 8 + 1))[:binary]
                content_type = "application/octet-stream"
            if header_bytes:
                extra.append(("X-Padding", "h" * header_bytes))

            if fail_first > 0:
                key = headers.get("webhook-id") or self.path
                if self.server.failures.next(key) <= fail_first:
                    status = fail_status
            if retry_after is not None and not 200 <= status < 300:
                extra.append(("Retry-After", retry_after))
            if location is not None:
                extra.append(("Location", location))
        except BadParameter as e:
            status = 400
            reply = ("bad receiver parameter: %s\n" % e).encode("utf-8")
            delay_ms = 0
            extra = []
            content_type = "text/plain; charset=utf-8"

        if delay_ms:
            time.sleep(min(delay_ms, MAX_DELAY_MS) / 1000.0)

        # Record before answering: once the client has its answer, the line
        # is already in the log.
        self._record(received_at, path, query, headers, body, status)
        try:
            self._answer(status, reply, extra, content_type)
        except OSError:
            # The client gave up (for example after its own timeout).
            self.close_connection = True


class Receiver(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 1024

    def __init__(self, host, port, log_path, connection_log=None, tls=None):
        self.tls = tls
        self.request_log = RequestLog(log_path)
        # the path of every request as it arrives, before any delay: what
        # is in flight is what arrived and is not in the request log yet
        self.arrival_log = RequestLog(log_path + ".arrivals")
        self.failures = FailureCounter()
        self.connection_log = connection_log
        super().__init__((host, port), Handler)

    def get_request(self):
        """With TLS, the handshake is made in the request's thread."""
        sock, address = super().get_request()
        if self.tls:
            sock = self.tls.wrap_socket(sock, server_side=True,
                                        do_handshake_on_connect=False)
        return sock, address

    def verify_request(self, request, client_address):
        """Every accepted connection, with or without a request, is noted."""
        if self.connection_log:
            with open(self.connection_log, "a") as f:
                f.write("%s:%d\n" % client_address[:2])
        return True

    def handle_error(self, request, client_address):
        """Connection errors (resets, broken pipes) are part of the tests."""


def write_port_file(path, port):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write("%d\n" % port)
    os.rename(tmp, path)


def main():
    parser = argparse.ArgumentParser(description="pg_herald test HTTP receiver")
    parser.add_argument("--log", required=True, help="JSON-lines request log (appended)")
    parser.add_argument("--host", default="127.0.0.1",
                        help="loopback address to bind (127.x.y.z), default 127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="port to bind, 0 = any free port")
    parser.add_argument("--connection-log", help="append one line per accepted connection")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument("--max-seconds", type=float, default=3600,
                        help="exit after this many seconds (default 3600)")
    parser.add_argument("--tls-cert", help="speak HTTPS with this certificate chain (PEM)")
    parser.add_argument("--tls-key", help="the private key of --tls-cert (PEM)")
    args = parser.parse_args()

    if not args.host.startswith("127."):
        parser.error("--host must be a loopback address (127.x.y.z)")
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            parser.error("--tls-cert and --tls-key go together")
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(args.tls_cert, args.tls_key)
    server = Receiver(args.host, args.port, args.log, args.connection_log, tls)

    stopping = threading.Event()

    def stop(*_):
        # shutdown() waits for serve_forever() to return, so it must not run
        # in the thread that is serving.
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    timer = threading.Timer(args.max_seconds, stop)
    timer.daemon = True
    timer.start()

    if args.port_file:
        write_port_file(args.port_file, server.server_address[1])

    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        timer.cancel()
        server.server_close()
        server.request_log.close()
        server.arrival_log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
