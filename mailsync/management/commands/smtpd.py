"""The CRM's SMTP listener: `manage.py smtpd [--host H] [--port P] [--processes N]` (see
mailsync/smtp.py).

Mail for local mailboxes is spooled in the database before `250` is answered and delivered by
the Celery worker; everything else is refused at RCPT time. Runs until SIGINT or SIGTERM.

One process is one event loop under one GIL (150-175 messages/s on the benchmark machine);
`--processes N` forks N listeners sharing the port through SO_REUSEPORT, and ends them all
when it is stopped or when one of them dies (so the process manager restarts the lot).
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import traceback

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from mailsync.smtp import build_controller


class Command(BaseCommand):
    help = "Run the SMTP listener for the CRM's own addresses until interrupted."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=2525)
        parser.add_argument(
            "--processes", type=int, default=1, help="Listener processes sharing the port."
        )

    def handle(self, *args, host: str, port: int, processes: int, **options) -> None:
        if processes < 1:
            raise CommandError("--processes must be at least 1.")
        # Fork before anything opens a database connection or starts a thread.
        children = [pid for pid in (self._fork(host, port) for _ in range(processes - 1)) if pid]
        stop = self._stop_on_signals()
        controller = build_controller(host=host, port=port, reuse_port=processes > 1)
        controller.start()
        extras = [
            "STARTTLS" if settings.SMTP_TLS_CERT and settings.SMTP_TLS_KEY else "",
            "AUTH" if settings.SMTP_AUTH_ENABLED else "",
            f"{processes} processes" if processes > 1 else "",
        ]
        features = ", ".join(e for e in extras if e)
        suffix = f" ({features})" if features else ""
        self.stdout.write(f"SMTP listener on {host}:{port}{suffix}")
        lost = False
        while not stop.wait(timeout=1.0):
            if any(os.waitpid(pid, os.WNOHANG)[0] for pid in children):
                lost = True
                break
        for pid in children:  # first, so they stop while this one does
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        controller.stop()
        _reap(children)
        if lost:
            raise CommandError("A listener process died; all of them were stopped.")

    @staticmethod
    def _stop_on_signals() -> threading.Event:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        return stop

    def _fork(self, host: str, port: int) -> int:
        """A child listener; returns its pid in the parent, never returns in the child. The
        child also stops when the parent is gone (it was not there to pass a signal on)."""
        parent = os.getpid()
        pid = os.fork()
        if pid:
            return pid
        try:
            stop = self._stop_on_signals()
            controller = build_controller(host=host, port=port, reuse_port=True)
            controller.start()
            while not stop.wait(timeout=1.0) and os.getppid() == parent:
                pass
            controller.stop()
        except BaseException:
            traceback.print_exc()
            os._exit(1)
        os._exit(0)


def _reap(children: list[int], timeout: float = 15.0) -> None:
    """Wait for the children to exit; those still running after `timeout` are killed."""
    deadline = time.monotonic() + timeout
    waiting = set(children)
    while waiting:
        for pid in list(waiting):
            try:
                done = os.waitpid(pid, os.WNOHANG)[0] != 0
            except ChildProcessError:
                done = True
            if done:
                waiting.discard(pid)
        if waiting and time.monotonic() > deadline:
            for pid in waiting:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            deadline = float("inf")
        time.sleep(0.05 if waiting else 0)
