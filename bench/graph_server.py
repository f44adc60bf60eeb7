"""The Graph simulator as a process of its own, for benchmarks.

`python bench/graph_server.py DIR --mailbox ADDR --messages N [--fault-rate R]` writes a test
CA and certificate to DIR, seeds the mailbox, prints `ready <port>` and then obeys commands on
stdin, one per line, answering each with one line: `mutate N [SEED]` (scripted changes),
`faults R [SEED]` (the fault share), `add SUBJECT` (a new message in the Inbox), `stats`
(requests served), `quit`. Change notifications go to https addresses whose certificate the
same test CA signed (`DIR/server.pem` serves the CRM in the webhook benchmark).

It runs apart from the syncing worker so that the worker's time and memory are its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from graphsim.seed import mutate, seed_bulk  # noqa: E402
from graphsim.server import start  # noqa: E402
from graphsim.tls import create_test_pki  # noqa: E402

TENANT, CLIENT_ID, SECRET = "contoso", "crm-bench", "bench-secret"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--mailbox", required=True)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--fault-rate", type=float, default=0.0)
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    pki = create_test_pki(args.directory)
    server = start(pki, notification_ca=pki.ca_cert)
    server.identity.register_app(tenant=TENANT, client_id=CLIENT_ID, secret=SECRET)
    mailbox = server.add_mailbox(args.mailbox)
    seed_bulk(mailbox, messages=args.messages, seed=1)
    server.set_fault_rate(args.fault_rate, seed=7)
    print(f"ready {server.server_address[1]} {pki.ca_cert}", flush=True)
    for line in sys.stdin:
        command, *rest = line.split()
        if command == "mutate":
            counts = mutate(mailbox, changes=int(rest[0]), seed=int(rest[1]) if rest[1:] else 0)
            print(json.dumps(counts), flush=True)
        elif command == "faults":
            server.set_fault_rate(float(rest[0]), seed=int(rest[1]) if rest[1:] else 0)
            print("ok", flush=True)
        elif command == "add":
            mailbox.add_message("inbox", **_message(" ".join(rest)))
            print("ok", flush=True)
        elif command == "stats":
            print(json.dumps({"requests": server.graph_requests}), flush=True)
        elif command == "quit":
            break
    server.shutdown()


def _message(subject: str) -> dict:
    return {
        "subject": subject,
        "from": {"emailAddress": {"name": "Ada", "address": "ada@customer.example"}},
        "toRecipients": [{"emailAddress": {"address": "help@contoso.example"}}],
        "body": {"contentType": "text", "content": "Hello"},
        "receivedDateTime": "2026-11-23T10:00:00Z",
        "internetMessageId": f"<{abs(hash(subject))}@customer.example>",
    }


if __name__ == "__main__":
    main()
