#!/usr/bin/env python3
"""Check Standard Webhooks signatures in a test receiver log.

This is an independent implementation of the verification a webhook
consumer performs, written with Python's hmac, hashlib and base64 only, so
that pg_herald's signing code is checked against the specification rather
than against itself.

    verify_signature.py --log FILE --secret whsec_... [--path-prefix /x]
                        [--tolerance 300]
    verify_signature.py --self-test

For every request recorded by test/receiver.py (optionally only those whose
path starts with --path-prefix) it prints one line:

    <n> ok
    <n> bad <reason>

A request is ok when one of the space-separated "v1,<base64>" entries of its
webhook-signature header equals base64(HMAC-SHA256(key, id "." timestamp "."
body)), where key is the base64-decoded part of the secret after "whsec_",
id and timestamp are the webhook-id and webhook-timestamp headers, and the
timestamp is within --tolerance seconds of the time the receiver got the
request.

Exit status: 0 when at least one request was checked and all are ok, 1 when
one is bad or none matched, 2 on usage errors.  --self-test checks the test
vector published with the Standard Webhooks reference libraries.
"""

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import sys

SECRET_PREFIX = "whsec_"

# Published with the Standard Webhooks reference libraries.
VECTOR_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
VECTOR_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
VECTOR_TIMESTAMP = "1614265330"
VECTOR_PAYLOAD = '{"test": 2432232314}'
VECTOR_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def decode_secret(secret):
    """Return the HMAC key bytes of a whsec_ secret."""
    encoded = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the secret is not base64 after %r" % SECRET_PREFIX)


def sign(key, msg_id, timestamp, body):
    """Return the v1 signature (without the "v1," prefix) of one message."""
    content = ("%s.%s.%s" % (msg_id, timestamp, body)).encode("utf-8")
    return base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")


def check(key, msg_id, timestamp, body, signature_header):
    """Return None when one v1 signature matches, else the reason it does not."""
    if not msg_id:
        return "missing webhook-id header"
    if not timestamp:
        return "missing webhook-timestamp header"
    if not signature_header:
        return "missing webhook-signature header"
    if not timestamp.isdigit():
        return "webhook-timestamp %r is not unix seconds" % timestamp
    expected = sign(key, msg_id, timestamp, body)
    found_v1 = False
    for entry in signature_header.split(" "):
        version, sep, value = entry.partition(",")
        if not sep or version != "v1":
            continue
        found_v1 = True
        if hmac.compare_digest(value.encode("ascii", "replace"), expected.encode("ascii")):
            return None
    if not found_v1:
        return "no v1 entry in webhook-signature %r" % signature_header
    return "no v1 signature matches"


def self_test():
    key = decode_secret(VECTOR_SECRET)
    failures = []
    got = "v1," + sign(key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD)
    if got != VECTOR_SIGNATURE:
        failures.append("test vector: got %s, expected %s" % (got, VECTOR_SIGNATURE))
    # The checker itself: the vector passes, also among other entries; a
    # changed body, id or timestamp, or another key, fails.
    other = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
    cases = [
        ("vector", key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD, VECTOR_SIGNATURE, True),
        ("rotation", key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD,
         "v2,abc " + other + " " + VECTOR_SIGNATURE, True),
        ("body", key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD + " ", VECTOR_SIGNATURE, False),
        ("id", key, VECTOR_ID + "x", VECTOR_TIMESTAMP, VECTOR_PAYLOAD, VECTOR_SIGNATURE, False),
        ("timestamp", key, VECTOR_ID, "1614265331", VECTOR_PAYLOAD, VECTOR_SIGNATURE, False),
        ("key", key[:-1] + bytes([key[-1] ^ 1]), VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD,
         VECTOR_SIGNATURE, False),
        ("no v1", key, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_PAYLOAD,
         "v1a" + VECTOR_SIGNATURE[2:], False),
    ]
    for name, k, msg_id, ts, body, header, should_pass in cases:
        passed = check(k, msg_id, ts, body, header) is None
        if passed != should_pass:
            failures.append("case %r: %s" % (name, "accepted" if passed else "rejected"))
    for failure in failures:
        print("self-test failed: " + failure)
    if failures:
        return 1
    print("self-test ok: %s" % VECTOR_SIGNATURE)
    return 0


def verify_log(path, secret, prefix, tolerance):
    try:
        key = decode_secret(secret)
    except ValueError as e:
        print("verify_signature.py: %s" % e, file=sys.stderr)
        return 2
    checked = 0
    bad = 0
    with open(path, "rb") as f:
        for raw in f:
            if not raw.endswith(b"\n"):
                break  # a line still being written
            entry = json.loads(raw.decode("utf-8"))
            if prefix and not entry.get("path", "").startswith(prefix):
                continue
            headers = entry.get("headers", {})
            reason = check(key,
                           headers.get("webhook-id"),
                           headers.get("webhook-timestamp"),
                           entry.get("body", ""),
                           headers.get("webhook-signature"))
            if reason is None and tolerance >= 0:
                skew = int(headers["webhook-timestamp"]) - entry.get("at", 0)
                if abs(skew) > tolerance:
                    reason = ("webhook-timestamp is %.0f s away from the time of receipt"
                              % skew)
            checked += 1
            if reason is None:
                print("%s ok" % entry.get("n"))
            else:
                bad += 1
                print("%s bad %s" % (entry.get("n"), reason))
    if checked == 0:
        print("verify_signature.py: no request to check in %s" % path, file=sys.stderr)
        return 1
    return 1 if bad else 0


def main():
    parser = argparse.ArgumentParser(
        description="Verify Standard Webhooks signatures recorded by test/receiver.py")
    parser.add_argument("--log", help="receiver log (JSON lines)")
    parser.add_argument("--secret", help="the channel's whsec_... secret")
    parser.add_argument("--path-prefix", default="", help="only requests whose path starts so")
    parser.add_argument("--tolerance", type=int, default=300,
                        help="largest allowed distance in seconds between webhook-timestamp "
                             "and the time of receipt (default 300, negative = no check)")
    parser.add_argument("--self-test", action="store_true",
                        help="check the published Standard Webhooks test vector")
    args = parser.parse_args()
    if args.self_test:
        return self_test()
    if not args.log or not args.secret:
        parser.error("--log and --secret are required (or --self-test)")
    return verify_log(args.log, args.secret, args.path_prefix, args.tolerance)


if __name__ == "__main__":
    sys.exit(main())
