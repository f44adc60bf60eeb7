"""`python -m graphsim`: a seeded Microsoft 365 for trying mail sync locally.

Serves the identity platform and Graph over HTTPS with a throwaway CA under `var/graphsim`,
seeds a shared mailbox with realistic support threads, and prints the settings that point the
CRM at it. It also accepts change-notification subscriptions (`POST /v1.0/subscriptions`) and
posts notifications to the CRM's webhooks when the mailbox changes. Ctrl-C stops it. Never for
production: it is a fake.
"""

from __future__ import annotations

import argparse
import signal
import threading
from pathlib import Path

from graphsim.seed import mutate, seed_mailbox
from graphsim.server import start
from graphsim.tls import create_test_pki


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m graphsim", description=__doc__)
    parser.add_argument("--mailbox", default="support@contoso.example")
    parser.add_argument("--threads", type=int, default=60, help="Support threads to seed.")
    parser.add_argument("--port", type=int, default=8443)
    parser.add_argument("--directory", type=Path, default=Path("var/graphsim"))
    parser.add_argument(
        "--changes-every", type=float, default=0, metavar="SECONDS",
        help="Apply a few scripted changes (new mail, reads, moves) this often.",
    )  # fmt: skip
    parser.add_argument(
        "--notification-ca", type=Path, metavar="PEM",
        help="CA file that webhook (notification URL) certificates must chain to "
        "(default: the system's CAs).",
    )  # fmt: skip
    parser.add_argument(
        "--allow-http-notifications", action="store_true",
        help="Accept plain-http notification URLs (Graph requires https).",
    )  # fmt: skip
    args = parser.parse_args()
    args.directory.mkdir(parents=True, exist_ok=True)
    pki = create_test_pki(args.directory)
    server = start(pki, port=args.port, notification_ca=args.notification_ca)
    server.allow_http_notification_urls = args.allow_http_notifications
    server.identity.register_app(tenant="contoso", client_id="crm-demo", secret="demo-secret")  # noqa: S106 - a fake
    mailbox = server.add_mailbox(args.mailbox)
    seed_mailbox(mailbox, threads=args.threads, seed=1)
    print(
        "Graph simulator ready. Put these in .env (or the environment) and run\n"
        f"`python manage.py connect_mailbox {args.mailbox} --team <TEAM>` and "
        f"`python manage.py sync_mail`:\n\n"
        f"MS_TENANT_ID=contoso\nMS_CLIENT_ID=crm-demo\nMS_CLIENT_SECRET=demo-secret\n"
        f"MS_AUTHORITY_HOST={server.base_url}\nGRAPH_API_URL={server.base_url}/v1.0\n"
        f"MS_CA_BUNDLE={pki.ca_cert.resolve()}\n\n"
        "Change notifications: subscriptions are created at "
        f"{server.base_url}/v1.0/subscriptions; notification URLs must be https with a "
        "certificate the system's CAs (or --notification-ca) trust, unless "
        "--allow-http-notifications.\n",
        flush=True,
    )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    round_number = 0
    while not stop.wait(args.changes_every or None):
        round_number += 1
        print("changes:", mutate(mailbox, changes=5, seed=round_number), flush=True)
    server.shutdown()


if __name__ == "__main__":
    main()
