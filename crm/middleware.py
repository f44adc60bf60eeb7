"""Middleware of the kernel."""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from crm.selectors import agent_timezone


class SyncMiddlewareChain:
    """Last in MIDDLEWARE, sync-only on purpose: it keeps the whole chain in one thread.

    Under ASGI Django runs a middleware in async mode whenever the handler inside it is async.
    Django's `MiddlewareMixin` middleware (sessions, CSRF, auth, messages, CSP, ...) then hops
    to a thread and back for each of its hooks. A sync-only middleware innermost makes every
    middleware outside it run synchronously in one thread, entered once per request. Measured on
    the development machine (2 cores): Django's ASGI handler answered /healthz in 3.9 ms per
    request without it and 2.5 ms with it.

    The price: an async view behind a sync chain keeps that request's thread waiting while it
    runs. Endpoints that hold a request open for long (ActiveSync Ping) must therefore be routed
    around this chain in `crm/asgi.py`; see docs/decisions.md.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


class AgentTimezoneMiddleware:
    """Show times in the signed-in agent's own time zone (their profile) on every page.

    Pages format datetimes in Django's current time zone, so one activation here puts every
    page in the agent's zone. Machine interfaces (the API, ActiveSync) keep UTC: their clients
    convert, and a response should not change with whoever holds the session.
    """

    MACHINE_PREFIXES = ("/api/", "/microsoft-server-activesync", "/autodiscover")

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        zone = (
            None if request.path.lower().startswith(self.MACHINE_PREFIXES) else _agent_zone(request)
        )
        if zone is None:
            return self.get_response(request)
        with timezone.override(zone):
            return self.get_response(request)


def _agent_zone(request: HttpRequest) -> zoneinfo.ZoneInfo | None:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return agent_timezone(user)
