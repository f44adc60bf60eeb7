"""Benchmarks against the production configuration; figures go to docs/benchmarks.md.

Run with `make bench`. Each benchmark rewrites its own section of docs/benchmarks.md (between
its markers) with the figures and the machine they ran on, so the file always holds the latest
honest run of every benchmark.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import (  # noqa: E402
    airtable_export,
    api_list,
    cases_api,
    intake,
    live,
    mail_api,
    mail_sync,
    recipient_stats,
    sla,
    smtp_intake,
    web_pages,
    webhooks,
    workflows,
)

BENCHMARKS = {
    "airtable_export": airtable_export.run,
    "api_list": api_list.run,
    "cases_api": cases_api.run,
    "mail_api": mail_api.run,
    "mail_sync": mail_sync.run,
    "intake": intake.run,
    "live": live.run,
    "recipient_stats": recipient_stats.run,
    "sla": sla.run,
    "smtp_intake": smtp_intake.run,
    "web_pages": web_pages.run,
    "webhooks": webhooks.run,
    "workflows": workflows.run,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of {', '.join(BENCHMARKS)}")
    args = parser.parse_args()
    unknown = set(args.names) - set(BENCHMARKS)
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    for name in args.names or BENCHMARKS:
        BENCHMARKS[name]()


if __name__ == "__main__":
    main()
