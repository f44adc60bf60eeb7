"""Middleware of the kernel."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


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
