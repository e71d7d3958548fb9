#!/usr/bin/env python3
"""HTTP client of the pg_herald TAP tests (loopback only).

    http_client.py send < requests.json
        requests.json is a JSON list of {"method", "url", "headers": {...},
        "body": text, "body_bytes": n (a body of n bytes of "a" instead),
        "declared_length": n (send only the headers, announcing an n-byte
        body and "Expect: 100-continue", as curl does for large bodies),
        "chunked": true (send the body chunked, with no length)}.
        They are all sent at once, one thread and connection each, started
        together; prints a JSON list, in the same order, of {"status",
        "headers": {lower-case name: value}, "body"} ("status": 0 and
        "error" when no answer came).

    http_client.py token KEY_HEX KEY_ID EVENT ACTION CHANNEL EXPIRES RECIPIENT
        Prints a decision link token computed here, independently of
        links.c: base64url (no padding) of version 1 | key id (4) | event (8)
        | action (1) | channel (4) | expiry, unix seconds (8) | recipient
        length (1) | recipient | HMAC-SHA256(key, "herald-link" NUL | all
        that precedes), integers big-endian.

    http_client.py hold N URL
        Opens N connections to URL's host and port, then sends GET URL on
        each and reads the answers; prints how many were answered.

    http_client.py slow URL
        Sends half a request line and waits (at most 60 s) for the server to
        close the connection; prints the seconds that took, or -1.

    http_client.py trickle URL
        Sends GET URL's request line, then a header one byte every 2 s,
        never ending it, until the server closes the connection (at most
        90 s); prints the seconds that took, or -1.

    http_client.py form KEY_HEX TOKEN MADE_AT
        Prints a page's form token for a link token, made at MADE_AT (unix
        seconds): MADE_AT.NONCE.MAC, MAC = base64url HMAC-SHA256(key,
        "herald-form" NUL | TOKEN "." MADE_AT "." NONCE).
"""

import base64
import hashlib
import hmac
import http.client
import json
import socket
import sys
import threading
import time
import urllib.parse

TIMEOUT = 60


def send_one(request, barrier, results, i):
    url = urllib.parse.urlsplit(request["url"])
    assert url.hostname.startswith("127.") or url.hostname == "::1", "loopback only"
    if "body_bytes" in request:
        body = b"a" * request["body_bytes"]
    else:
        body = request.get("body")
        body = body.encode("utf-8") if body is not None else None
    path = url.path + ("?" + url.query if url.query else "")
    try:
        barrier.wait(TIMEOUT)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
        if "declared_length" in request:
            conn.putrequest(request.get("method", "POST"), path)
            for name, value in request.get("headers", {}).items():
                conn.putheader(name, value)
            conn.putheader("Content-Length", str(request["declared_length"]))
            conn.putheader("Expect", "100-continue")
            conn.endheaders()
        elif request.get("chunked"):
            chunks = [body[i:i + 16384] for i in range(0, len(body), 16384)]
            conn.request(request.get("method", "POST"), path, body=iter(chunks),
                         headers=request.get("headers", {}), encode_chunked=True)
        else:
            conn.request(request.get("method", "GET"), path, body=body,
                         headers=request.get("headers", {}))
        response = conn.getresponse()
        data = response.read()
        results[i] = {
            "status": response.status,
            "headers": {k.lower(): v for k, v in response.getheaders()},
            "body": data.decode("utf-8", "replace"),
        }
        conn.close()
    except Exception as e:  # the test judges
        results[i] = {"status": 0, "headers": {}, "body": "", "error": repr(e)}


def send():
    requests = json.load(sys.stdin)
    results = [None] * len(requests)
    barrier = threading.Barrier(len(requests))
    threads = [threading.Thread(target=send_one, args=(r, barrier, results, i))
               for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(2 * TIMEOUT)
    json.dump(results, sys.stdout)


def token(key_hex, key_id, event, action, channel, expires, recipient):
    r = recipient.encode("utf-8")
    raw = (bytes([1]) + int(key_id).to_bytes(4, "big") + int(event).to_bytes(8, "big")
           + bytes([int(action)]) + int(channel).to_bytes(4, "big")
           + int(expires).to_bytes(8, "big") + bytes([len(r)]) + r)
    mac = hmac.new(bytes.fromhex(key_hex), b"herald-link\0" + raw, hashlib.sha256).digest()
    print(base64.urlsafe_b64encode(raw + mac).rstrip(b"=").decode("ascii"))


def hold(n, target):
    url = urllib.parse.urlsplit(target)
    assert url.hostname.startswith("127."), "loopback only"
    conns = []
    for _ in range(int(n)):
        c = http.client.HTTPConnection(url.hostname, url.port, timeout=TIMEOUT)
        c.connect()
        conns.append(c)
    answered = 0
    for c in conns:
        try:
            c.request("GET", url.path)
            c.getresponse().read()
            answered += 1
        except Exception:
            pass
    for c in conns:
        c.close()
    print(answered)


def slow(target):
    url = urllib.parse.urlsplit(target)
    assert url.hostname.startswith("127."), "loopback only"
    s = socket.create_connection((url.hostname, url.port), timeout=60)
    start = time.monotonic()
    s.sendall(b"GET " + url.path.encode("ascii"))
    try:
        while s.recv(4096):
            pass
        print("%.1f" % (time.monotonic() - start))
    except (socket.timeout, OSError):
        print(-1)
    s.close()


def trickle(target):
    url = urllib.parse.urlsplit(target)
    assert url.hostname.startswith("127."), "loopback only"
    s = socket.create_connection((url.hostname, url.port), timeout=5)
    start = time.monotonic()
    s.sendall(b"GET " + url.path.encode("ascii") + b" HTTP/1.1\r\nHost: a\r\nX-Slow: ")
    closed = -1
    while time.monotonic() - start < 90:
        try:
            s.sendall(b"a")
            # the server's close shows as a read of nothing, or a reset
            s.settimeout(2)
            if s.recv(4096) == b"":
                closed = time.monotonic() - start
                break
        except socket.timeout:
            continue
        except OSError:
            closed = time.monotonic() - start
            break
    print("%.1f" % closed)
    s.close()


def form(key_hex, link_token, made_at):
    nonce = base64.urlsafe_b64encode(b"test-nonc").rstrip(b"=").decode("ascii")
    data = ("%s.%d.%s" % (link_token, int(made_at), nonce)).encode("ascii")
    mac = hmac.new(bytes.fromhex(key_hex), b"herald-form\0" + data, hashlib.sha256).digest()
    print("%d.%s.%s" % (int(made_at), nonce,
                        base64.urlsafe_b64encode(mac).rstrip(b"=").decode("ascii")))


if __name__ == "__main__":
    if sys.argv[1] == "send":
        send()
    elif sys.argv[1] == "token":
        token(*sys.argv[2:9])
    elif sys.argv[1] == "hold":
        hold(sys.argv[2], sys.argv[3])
    elif sys.argv[1] == "slow":
        slow(sys.argv[2])
    elif sys.argv[1] == "trickle":
        trickle(sys.argv[2])
    elif sys.argv[1] == "form":
        form(*sys.argv[2:5])
    else:
        sys.exit("usage: http_client.py send | token ...")
