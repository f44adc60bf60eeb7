"""The Graph webhooks served straight from ASGI, ahead of Django's request handling.

Graph sends change notifications in bursts of up to a thousand a second and wants each
answered within three seconds. Through Django's handler and middleware a notification cost
about 3 ms of CPU (measured: two web processes on two cores answered 319 a second), so these
two paths are answered here with the same rules (`crm.webhooks`): the verification is a
dictionary lookup and an HMAC for a subscription seen in the last half minute, and the only
I/O per notification is one Redis `SET NX` (async) that coalesces a burst into one round.
The database and Celery are reached in a thread only when a subscription is not remembered
yet or a round is actually scheduled.

Everything else, and everything on the embedded stack without Redis, goes to Django.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.cache import cache

from crm import webhooks
from crm.graph import subscriptions

PATHS = {
    "/api/v1/webhooks/microsoft": webhooks.NOTIFICATIONS,
    "/api/v1/webhooks/microsoft/lifecycle": webhooks.LIFECYCLE,
}


class GraphWebhooks:
    """ASGI middleware: POSTs to the webhook paths are answered here, the rest passes on."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.redis = _async_redis()

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        endpoint = PATHS.get(scope.get("path", "")) if scope["type"] == "http" else None
        if endpoint is None or scope["method"] != "POST" or self.redis is None:
            await self.app(scope, receive, send)
            return
        answer = await self._answer(scope, receive, endpoint)
        await _send(send, answer)

    async def _answer(self, scope: dict, receive: Any, endpoint: str) -> webhooks.Answer:
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        if "validationToken" in query:
            return webhooks.validation_answer(query["validationToken"][0])
        remote = (scope.get("client") or ("?",))[0]
        if webhooks.rate_window.over(remote):
            return webhooks.TOO_MANY
        refused = webhooks.body_too_large(_header(scope, b"content-length"))
        if refused:
            return refused
        body = await _body(receive, settings.WEBHOOK_MAX_BODY_BYTES)
        if body is None:
            return webhooks.body_too_large("-1")
        items, problem = webhooks.read_items(body)
        if problem:
            return problem
        outcomes = [await self._handle(endpoint, item) for item in items]
        return webhooks.summary(outcomes, remote)

    async def _handle(self, endpoint: str, item: object) -> str:
        known = None
        if isinstance(item, dict):
            known = subscriptions.verified_if_cached(
                item.get("subscriptionId"), item.get("clientState")
            )
        if known is False:  # not remembered: ask the database once, in a thread
            outcome, known = await sync_to_async(webhooks.triage, thread_sensitive=False)(
                endpoint, item
            )
            if outcome != "ok":
                return outcome
        elif known is None or (
            endpoint == webhooks.LIFECYCLE
            and item.get("lifecycleEvent") not in webhooks.LIFECYCLE_EVENTS
        ):
            return webhooks.triage(endpoint, item)[0]
        if endpoint == webhooks.LIFECYCLE:
            await sync_to_async(subscriptions.lifecycle_schedule, thread_sensitive=False)(
                known, item["lifecycleEvent"]
            )
        elif await self._claim(known):
            await sync_to_async(subscriptions.round_claimed, thread_sensitive=False)(known)
        return "ok"

    async def _claim(self, known: subscriptions.Known) -> bool:
        """The coalescing mark, set atomically in Redis (the key Django's cache would use)."""
        key = cache.make_key(subscriptions.pending_key(known.kind, known.target_id))
        return bool(await self.redis.set(key, b"1", nx=True, ex=subscriptions.PENDING_MARK_SECONDS))


def _async_redis() -> Any:
    """An asyncio Redis client on the cache's server, or None without Redis (embedded)."""
    if not settings.REDIS_URL:
        return None
    import redis.asyncio

    return redis.asyncio.Redis.from_url(settings.REDIS_URL)


def _header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return value.decode("latin-1")
    return None


async def _body(receive: Any, limit: int) -> bytes | None:
    """The request body; None once it grows past `limit` (a sender that lied about it)."""
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


async def _send(send: Any, answer: webhooks.Answer) -> None:
    headers = [
        (b"content-type", answer.content_type.encode()),
        (b"content-length", str(len(answer.body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in answer.headers.items()),
    ]
    await send({"type": "http.response.start", "status": answer.status, "headers": headers})
    await send({"type": "http.response.body", "body": answer.body})
