"""`python -m airtablesim`: a fake Airtable on loopback for trying the export locally.

One base with one table whose columns are the export's sources; prints the settings and the
export values to use. Ctrl-C stops it. Never for production: it is a fake.
"""

from __future__ import annotations

import argparse
import signal
import threading

from airtablesim.server import start

COLUMNS = ["Email", "Domain", "To", "Cc", "Bcc", "Sent", "First sent", "Last sent", "Customer",
           "Customer id", "VIP", "Organization", "Organization id", "Tier"]  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m airtablesim", description=__doc__)
    parser.add_argument("--port", type=int, default=8770)
    parser.add_argument("--base", default="appLOCALBASE00001")
    parser.add_argument("--table", default="Recipients")
    parser.add_argument("--token", default="patLOCAL.demo-token")
    parser.add_argument("--lockout", type=float, default=30.0, help="Seconds after a 429.")
    args = parser.parse_args()
    server = start(args.port)
    server.lockout_seconds = args.lockout
    server.add_base(args.base, token=args.token, tables={args.table: COLUMNS})
    print(
        f"Fake Airtable ready. Set AIRTABLE_API_URL={server.base_url} and add an export in "
        f"admin with base id {args.base}, table {args.table}, token {args.token}; columns: "
        f"{', '.join(COLUMNS)}.",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    while not stop.wait(5):
        table = server.table(args.base, args.table)
        print(f"{len(table.records)} records; requests {dict(server.counts)}", flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
