"""The CRM's SMTP listener: `manage.py smtpd [--host H] [--port P]`.

Until local mailboxes exist (email-to-case issue) there is no address to deliver to, so the
listener speaks SMTP properly and refuses every recipient at RCPT time with 550, which makes
the sending server bounce at once instead of retrying for days.
"""

from __future__ import annotations

import logging
import signal
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from django.core.management.base import BaseCommand

logger = logging.getLogger(__name__)


class NoLocalMailboxesHandler:
    async def handle_RCPT(  # noqa: N802 - aiosmtpd's hook name
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list
    ) -> str:
        logger.info("smtp: refused recipient %s (no local mailboxes)", address)
        return "550 5.1.1 No such mailbox here"


class Command(BaseCommand):
    help = "Run the SMTP listener for the CRM's own addresses until interrupted."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2525)

    def handle(self, *args, host: str, port: int, **options) -> None:
        controller = Controller(NoLocalMailboxesHandler(), hostname=host, port=port)
        controller.start()
        self.stdout.write(f"SMTP listener on {host}:{port}")
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        stop.wait()
        controller.stop()
