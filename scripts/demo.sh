#!/usr/bin/env bash
# pg_herald in one minute.  Run as root from the repository root:
#
#   bash scripts/demo.sh
#
# Builds and installs pg_herald, starts a throwaway PostgreSQL cluster and a
# local webhook receiver on 127.0.0.1, declares a webhook channel and a row
# rule for large orders, inserts three orders, and shows what the receiver
# got: Standard Webhooks headers, the JSON body with the actions offered, an
# independent signature check and the delivery trace pg_herald keeps in
# herald.deliveries.  Then it answers one order as a person would: opens the
# signed link of an action on pg_herald's own decision page, submits the
# form, and shows the decision recorded and announced.
# Everything it starts is stopped and removed on exit, also on failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)

# shellcheck source=scripts/cluster.sh
source "$repo/scripts/cluster.sh"

tmp=
cleanup() {
	herald_stop_all >/dev/null 2>&1 || true
	if [ -n "$tmp" ]; then
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

section() {
	echo
	echo "==== $* ===="
}

python=$(herald_python)

section "Installing dependencies"
bash scripts/deps.sh
echo "all present"

section "Building and installing pg_herald"
tmp=$(mktemp -d /tmp/pg_herald_demo.XXXXXX)
chmod 755 "$tmp"
if ! { make && make install; } >"$tmp/build.log" 2>&1; then
	cat "$tmp/build.log"
	echo "demo: the build failed" >&2
	exit 1
fi
echo "installed into $(pg_config --pkglibdir)"

section "Starting a throwaway cluster and a local webhook receiver"
http_port=$(herald_free_port)
herald_cluster_start "$tmp/pg" "herald.http_listen = '127.0.0.1:$http_port'"
herald_receiver_start "$tmp/receiver"
echo "PostgreSQL: 127.0.0.1:$PGPORT, database \"$PGDATABASE\", pg_herald preloaded"
echo "receiver:   $HERALD_RECEIVER_URL"
echo "decisions:  http://127.0.0.1:$http_port (pg_herald's HTTP worker)"

psql=("$(herald_pg_bindir)/psql" -X -v ON_ERROR_STOP=1)

section "Declaring a channel and a rule, then inserting three orders"
"${psql[@]}" -a -v url="$HERALD_RECEIVER_URL" <<'SQL'
CREATE EXTENSION pg_herald;

CREATE TABLE orders(id serial PRIMARY KEY, customer text, amount numeric);

SELECT herald.create_channel(name => 'orders-webhook', kind => 'webhook',
                             target => :'url' || '/orders');

SELECT herald.on_change(name => 'big-order', on_table => 'orders',
                        channels => ARRAY['orders-webhook'],
                        operations => ARRAY['INSERT'],
                        condition => 'NEW.amount > 10000',
                        message => 'Order {{new.id}} from {{new.customer}}: {{new.amount}} EUR',
                        choices => ARRAY['Call the customer', 'Check for fraud', 'Nothing to do']);

INSERT INTO orders(customer, amount) VALUES
    ('ACME Corp', 25000),
    ('Corner Shop', 120),
    ('Globex', 18500);

-- wait until the deliveries caused by the insert are done
SELECT herald.flush();
SQL

section "Webhooks received by $HERALD_RECEIVER_URL/orders"
"$python" - "$HERALD_RECEIVER_LOG" <<'PY'
import json
import sys

for raw in open(sys.argv[1], encoding="utf-8"):
    if not raw.endswith("\n"):
        break
    request = json.loads(raw)
    if not request["path"].startswith("/orders"):
        continue
    headers = request["headers"]
    print("#%d  %s %s  -> answered %d" % (request["n"], request["method"],
                                         request["path"], request["status"]))
    for name in ("content-type", "webhook-id", "webhook-timestamp", "webhook-signature"):
        print("  %s: %s" % (name, headers.get(name, "(missing)")))
    try:
        body = json.dumps(json.loads(request["body"]), indent=2, ensure_ascii=False)
    except ValueError:
        body = request["body"]
    print("  body:")
    for line in body.splitlines():
        print("    " + line)
    print()
PY

section "Independent signature check (test/verify_signature.py)"
secret=$("${psql[@]}" -Atq -c "SELECT secret FROM herald.channel_defs WHERE name = 'orders-webhook'")
echo "channel secret: ${secret:0:10}... (from herald.channel_defs)"
"$python" test/verify_signature.py --log "$HERALD_RECEIVER_LOG" --secret "$secret" \
	--path-prefix /orders

section "Delivery trace (herald.deliveries)"
"${psql[@]}" -c "SELECT id, event_id, channel, status, attempts, last_status FROM herald.deliveries ORDER BY id"

received=$("$python" -c 'import json, sys
ids = set()
for raw in open(sys.argv[1], encoding="utf-8"):
    if raw.endswith("\n"):
        r = json.loads(raw)
        if r["path"].startswith("/orders"):
            ids.add(r["headers"].get("webhook-id"))
print(len(ids))' "$HERALD_RECEIVER_LOG")
if [ "$received" -ne 2 ]; then
	echo "demo: expected 2 webhooks (the two orders above 10000 EUR), got $received" >&2
	exit 1
fi
echo
echo "Two of the three orders were above 10000 EUR: two signed webhooks, one per order."

section "Deciding from the message: the second action of an order"
# what a person does in a browser: open the link (GET shows, records
# nothing), pick a choice, say why, submit (POST records)
"$python" - "$HERALD_RECEIVER_LOG" <<'PY'
import html
import json
import re
import sys
import urllib.parse
import urllib.request

first = None
for raw in open(sys.argv[1], encoding="utf-8"):
    if raw.endswith("\n"):
        request = json.loads(raw)
        if request["path"].startswith("/orders"):
            first = json.loads(request["body"])
            break
actions = first["data"]["actions"]
print("actions offered by event %d:" % first["data"]["event_id"])
for action in actions:
    print("  %-18s %s" % (action["label"], action["url"][:60] + "..."))
url = actions[1]["url"]


def text_of(page):
    body = re.sub(r"(?s)<(script|style).*?</\1>", "", page)
    body = re.sub(r"(?s)<[^>]+>", "\n", body)
    lines = [html.unescape(l).strip() for l in body.splitlines()]
    return [l for l in lines if l]


with urllib.request.urlopen(url, timeout=10) as response:
    page = response.read().decode("utf-8")
    print("\nGET  -> %d %s" % (response.status, response.headers["content-type"]))
lines = text_of(page)
print("  page: " + " | ".join(lines[:3]))
who = re.search(r"(?s)Recording as(.*?)</p>", page)
print("  Recording as " + " ".join(html.unescape(re.sub(r"<[^>]+>", "", who.group(1))).split()))
form = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page))
checked = re.search(r'name="action" value="(\d+)" checked', page)
form.update({"action": checked.group(1) if checked else "2",
             "said": "Two orders this size in a week: checking with the bank first",
             "name": "Ann (sales)", "next_step": "call the bank", "owner": "ann"})
data = urllib.parse.urlencode(form).encode()
post = urllib.request.Request(url, data=data, method="POST",
                              headers={"Origin": re.match(r"https?://[^/]+", url).group(0)})
with urllib.request.urlopen(post, timeout=10) as response:
    print("POST -> %d: %s" % (response.status, " | ".join(text_of(response.read().decode("utf-8"))[:2])))
PY

"${psql[@]}" -c "SELECT herald.flush()" >/dev/null
section "The decision, as pg_herald keeps it (herald.decisions)"
"${psql[@]}" -c "SELECT event_id, rule, kind, choice, decision, action, action_owner, decided_by, identified_by, channel FROM herald.decisions"

section "The decision announced to the rule's channels (decision.recorded)"
"$python" - "$HERALD_RECEIVER_LOG" <<'PY'
import json
import sys

for raw in open(sys.argv[1], encoding="utf-8"):
    if raw.endswith("\n"):
        request = json.loads(raw)
        body = json.loads(request["body"]) if request["path"].startswith("/orders") else {}
        if body.get("type") == "decision.recorded":
            print("  " + body["data"]["message"].replace("\n", "\n  "))
PY
decided=$("${psql[@]}" -Atq -c "SELECT count(*) FROM herald.decisions WHERE identified_by = 'link'")
if [ "$decided" -ne 1 ]; then
	echo "demo: expected one decision recorded from the link, got $decided" >&2
	exit 1
fi
