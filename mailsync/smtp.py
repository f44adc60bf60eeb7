"""The CRM's SMTP listener: an aiosmtpd handler that accepts mail for local mailboxes and
spools it durably before answering `250` (DESIGN.md "Processes").

What a session may do:

- RCPT: a local mailbox's address, else `550 5.1.1` (the sending server bounces at once
  instead of retrying for days); at most `SMTP_MAX_RECIPIENTS` accepted (`452` beyond, which
  tells the client to send the rest in another transaction).
- DATA: up to `SMTP_MAX_MESSAGE_BYTES` (aiosmtpd answers `552` beyond); the raw bytes are
  committed to the spool (`services.inbound_receive`) and only then acknowledged. A client
  that disconnects before the final dot leaves nothing behind. A database failure answers
  `451`, a temporary failure the sender retries, never a 5xx that would lose the mail.
- STARTTLS when `SMTP_TLS_CERT` and `SMTP_TLS_KEY` are set.
- AUTH PLAIN/LOGIN with an agent's Django password when `SMTP_AUTH_ENABLED` (only after
  STARTTLS unless `SMTP_AUTH_REQUIRE_TLS` is false). An authenticated agent may send from the
  local mailboxes they see (their own, their teams'); the message also lands in that
  mailbox's Sent Items. Recipients outside the CRM are refused with `550 5.7.1`: outbound
  relay is not configured (it arrives with a later issue), and an open relay is worse.

The handler's coroutines run on aiosmtpd's event loop; database work goes to a small pool of
threads of its own (`sync_to_async(thread_sensitive=False, executor=...)`), so sessions wait
on the database in parallel while the loop keeps serving others, and password hashing never
blocks the loop.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from concurrent import futures
from concurrent.futures import ThreadPoolExecutor
from email.utils import format_datetime
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import MISSING, SMTP, AuthResult, Envelope, Session
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.utils import timezone

from crm.models import User
from mailsync import selectors, services
from mailsync.mime import one_line

logger = logging.getLogger(__name__)

# Threads for the listener's database work. Each keeps one pooled connection (below the
# pool's default maximum of 10): reconnecting for every SMTP command would cost more than the
# command's query.
DB_THREADS = 4
AUTH_FAILURE_DELAY = 1.0  # seconds a failed AUTH waits before answering (slows guessing)
# How long the set of local addresses is trusted (see CrmHandler.is_local).
ADDRESS_CACHE_SECONDS = 10.0
# RFC 5321 says 1,000 octets a line; real senders write longer lines (HTML on one line) and
# bouncing their mail helps nobody, so lines up to this are accepted.
LINE_LENGTH_LIMIT = 1_000_000
TEMPORARY_FAILURE = "451 4.3.0 Temporary failure, please try again later"


class DatabaseThreads:
    """The listener's database threads (`sync_to_async(thread_sensitive=False)` on an
    executor of our own): sessions wait on the database in parallel while the event loop
    serves the others.

    A thread's connection stays open between calls; one that failed and is no longer usable
    is closed before the next call, so a database restart costs one failed call, not a
    listener that fails for ever. `close()` closes every thread's connection.
    """

    def __init__(self, size: int = DB_THREADS) -> None:
        self.size = size
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="smtp-db")

    async def run(self, func: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        unit = sync_to_async(self._unit, thread_sensitive=False, executor=self.executor)
        return await unit(func, *args, **kwargs)

    @staticmethod
    def _unit(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        for connection in connections.all(initialized_only=True):
            if connection.connection is not None and connection.errors_occurred:
                if not connection.is_usable():
                    connection.close()
                connection.errors_occurred = False
        return func(*args, **kwargs)

    def close(self) -> None:
        """Close each thread's connection (a barrier puts one job on every thread), then stop
        the threads."""
        barrier = threading.Barrier(self.size)

        def close_here() -> None:
            with contextlib.suppress(threading.BrokenBarrierError):
                barrier.wait(timeout=5)
            connections.close_all()

        # Bounded: a thread stuck in a query must not hold up stopping the listener.
        futures.wait([self.executor.submit(close_here) for _ in range(self.size)], timeout=10)
        self.executor.shutdown(wait=False, cancel_futures=True)


def check_password(login: str, password: str) -> int | None:
    """The id of the active user with this email and password, else None. An unknown login
    costs one hash too, so the time taken does not tell which addresses exist."""
    user = User.objects.filter(email__iexact=login.strip(), is_active=True).first()
    if user is None:
        User().set_password(password)
        return None
    return user.pk if user.check_password(password) else None


def may_send_as(user_id: int, address: str) -> bool:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None:
        return False
    return selectors.local_sender_mailbox(user=user, address=address) is not None


def local_addresses() -> frozenset[str]:
    return frozenset(selectors.local_addresses())


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text.encode(), validate=True)
    except (binascii.Error, ValueError):
        return None


class CrmHandler:
    """aiosmtpd hooks (`handle_*`) and AUTH mechanisms (`auth_*`); see the module docstring."""

    def __init__(self, *, max_recipients: int, allow_auth: bool) -> None:
        self.max_recipients = max_recipients
        self.allow_auth = allow_auth  # not "auth_...": aiosmtpd takes those for mechanisms
        self._addresses: frozenset[str] = frozenset()
        self._addresses_at = float("-inf")
        self.db = DatabaseThreads()

    async def is_local(self, address: str) -> bool:
        """Whether `address` is a local mailbox's. The set is read again after
        `ADDRESS_CACHE_SECONDS`, and on a miss at most once a second, so a recipient costs no
        query while a mailbox connected a moment ago is not refused (550 is final)."""
        address = address.strip().lower()
        age = time.monotonic() - self._addresses_at
        if age > ADDRESS_CACHE_SECONDS or (address not in self._addresses and age > 1.0):
            self._addresses = await self.db.run(local_addresses)
            self._addresses_at = time.monotonic()
        return address in self._addresses

    async def handle_EHLO(  # noqa: N802 - aiosmtpd's hook names
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list
    ) -> list[str]:
        session.host_name = hostname
        if not self.allow_auth:
            responses = [line for line in responses if not line[4:].startswith("AUTH")]
        return responses

    async def handle_MAIL(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if session.authenticated and address:
            try:
                allowed = await self.db.run(may_send_as, session.auth_data, address)
            except Exception:
                logger.exception("smtp: checking the sender %s failed", address)
                return TEMPORARY_FAILURE
            if not allowed:
                logger.info("smtp: user %s may not send as %s", session.auth_data, address)
                return f"553 5.7.1 <{address}>: sender address not owned by user"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list
    ) -> str:
        if len(envelope.rcpt_tos) >= self.max_recipients:
            return "452 4.5.3 Too many recipients"
        try:
            local = await self.is_local(address)
        except Exception:
            logger.exception("smtp: looking up the recipient %s failed", address)
            return TEMPORARY_FAILURE
        if not local:
            logger.info("smtp: refused recipient %s from %s", address, session.peer)
            if session.authenticated:
                return "550 5.7.1 Relaying is not configured: only the CRM's own addresses"
            return f"550 5.1.1 <{address}>: no such mailbox here"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = _received_line(server, session) + (envelope.original_content or b"")
        try:
            inbound = await self.db.run(
                services.inbound_receive,
                raw=raw,
                mail_from=envelope.mail_from or "",
                rcpt_tos=list(envelope.rcpt_tos),
                peer=_peer(session),
                helo=session.host_name or "",
                user_id=session.auth_data if session.authenticated else None,
            )
        except Exception:
            logger.exception("smtp: storing a message from %s failed", session.peer)
            return TEMPORARY_FAILURE
        return f"250 2.0.0 OK: queued as {inbound.pk}"

    # --- AUTH: our own PLAIN and LOGIN, so that checking a password (a deliberately slow
    # hash) happens in a thread instead of on the event loop every session shares.

    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        if len(args) > 1:
            blob = _b64(args[1])
        else:
            blob = await server.challenge_auth("")
            if blob is MISSING:
                return AuthResult(success=False, handled=True)
        fields = blob.split(b"\x00") if blob is not None else []
        if len(fields) != 3:
            await server.push("501 5.5.2 Cannot decode the credentials")
            return AuthResult(success=False, handled=True)
        return await self._login(fields[1], fields[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:  # noqa: N802
        login = _b64(args[1]) if len(args) > 1 else await server.challenge_auth("Username:")
        if login is None:
            await server.push("501 5.5.2 Cannot decode the credentials")
            return AuthResult(success=False, handled=True)
        if login is MISSING:
            return AuthResult(success=False, handled=True)
        password = await server.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._login(login, password)

    async def _login(self, login: bytes, password: bytes) -> AuthResult:
        try:
            user_id = await self.db.run(
                check_password,
                login.decode("utf-8", "replace"),
                password.decode("utf-8", "replace"),
            )
        except Exception:
            logger.exception("smtp: checking a password failed")
            user_id = None
        if user_id is None:
            who = one_line(login.decode("utf-8", "replace"))[:100]
            logger.info("smtp: authentication failed for %r", who)
            await asyncio.sleep(AUTH_FAILURE_DELAY)
            return AuthResult(success=False, handled=False)
        return AuthResult(success=True, auth_data=user_id)


def _peer(session: Session) -> str:
    peer = session.peer
    return str(peer[0]) if isinstance(peer, tuple) and peer else str(peer or "")


def _received_line(server: SMTP, session: Session) -> bytes:
    """The trace header every MTA prepends (RFC 5321 4.4)."""
    protocol = "ESMTP" if session.extended_smtp else "SMTP"
    protocol += "S" if session.ssl else ""
    protocol += "A" if session.authenticated else ""
    helo = one_line(session.host_name or "unknown")[:100]
    line = (
        f"Received: from {helo} ([{_peer(session)}])\r\n"
        f"\tby {server.hostname} with {protocol};\r\n"
        f"\t{format_datetime(timezone.now())}\r\n"
    )
    return line.encode("utf-8", "replace")


class _CrmSMTP(SMTP):
    line_length_limit = LINE_LENGTH_LIMIT


class _QuietDeprecation(logging.Filter):
    """aiosmtpd itself sets the deprecated `Session.login_data` on every AUTH and warns."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("Session.login_data is deprecated")


# aiosmtpd logs every session at INFO, several lines each; the handler logs what matters.
logging.getLogger("mail.log").addFilter(_QuietDeprecation())
logging.getLogger("mail.log").setLevel(logging.WARNING)


class CrmController(Controller):
    """aiosmtpd's threaded Controller, serving sessions with our SMTP subclass; with
    `reuse_port`, several processes listen on the same port (SO_REUSEPORT) and the kernel
    spreads connections over them."""

    reuse_port = False

    def _create_server(self) -> Any:  # aiosmtpd's documented override point for binding
        return self.loop.create_server(
            self._factory_invoker,
            host=self.hostname,
            port=self.port,
            ssl=self.ssl_context,
            reuse_port=self.reuse_port or None,
        )

    def _trigger_server(self) -> None:  # aiosmtpd's hook to check factory() at start
        if not self.reuse_port:
            super()._trigger_server()
            return
        # With SO_REUSEPORT the test connection may well reach a sibling process, and start()
        # would wait for a factory call that never comes: call it directly instead.
        self._factory_invoker()

    def factory(self) -> SMTP:
        # The loop is passed: left to itself, SMTP looks it up for every connection, under a
        # warnings filter, which cost about 5% of the listener's CPU.
        return _CrmSMTP(self.handler, loop=self.loop, **self.SMTP_kwargs)

    def stop(self, *args: Any, **kwargs: Any) -> None:
        super().stop(*args, **kwargs)
        self.handler.db.close()


def tls_context() -> ssl.SSLContext | None:
    """A server context for STARTTLS from `SMTP_TLS_CERT`/`SMTP_TLS_KEY`, or None."""
    if not (settings.SMTP_TLS_CERT and settings.SMTP_TLS_KEY):
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.SMTP_TLS_CERT, settings.SMTP_TLS_KEY)
    return context


def build_controller(*, host: str, port: int, reuse_port: bool = False) -> CrmController:
    """The listener as configured by the `SMTP_*` settings; `start()` it, `stop()` it."""
    context = tls_context()
    auth_enabled = settings.SMTP_AUTH_ENABLED
    if auth_enabled and settings.SMTP_AUTH_REQUIRE_TLS and context is None:
        logger.warning("smtp: AUTH needs STARTTLS, but SMTP_TLS_CERT/KEY are not set")
    handler = CrmHandler(max_recipients=settings.SMTP_MAX_RECIPIENTS, allow_auth=auth_enabled)
    controller = CrmController(
        handler,
        hostname=host,
        port=port,
        server_hostname=settings.SMTP_HOSTNAME or socket.getfqdn(),
        ident="CRM ESMTP",
        data_size_limit=settings.SMTP_MAX_MESSAGE_BYTES,
        enable_SMTPUTF8=True,
        tls_context=context,
        auth_require_tls=settings.SMTP_AUTH_REQUIRE_TLS,
        auth_exclude_mechanism=[] if auth_enabled else ["PLAIN", "LOGIN"],
    )
    controller.reuse_port = reuse_port
    return controller
