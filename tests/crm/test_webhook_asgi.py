"""The webhooks as production serves them: uvicorn, the ASGI fast path, Redis, PostgreSQL."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request
from urllib.parse import quote

import pytest
from django.core.cache import cache

from crm.choices import SubscriptionState
from crm.graph import subscriptions
from crm.models import GraphSubscription

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "fast-path-client-state"


@pytest.fixture
def subscription() -> GraphSubscription:
    cache.delete(subscriptions.pending_key("mail_folder", 424242))
    return GraphSubscription.objects.create(
        kind="mail_folder",
        target_id=424242,
        resource="users/x/mailFolders('inbox')/messages",
        graph_id="5e5a1b8e-0000-4000-8000-000000000001",
        client_state_hash=subscriptions._digest(SECRET),
        state=SubscriptionState.ACTIVE,
    )


def post(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=body or b"", method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def declared_too_large(url: str, length: int) -> int:
    """The status of a POST that announces `length` bytes and sends none: the fast path
    refuses on the header, before reading, and closes the connection. Sending the body as
    well would race that close (a reset while writing, depending on load)."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        connection.putrequest("POST", parts.path)
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", str(length))
        connection.endheaders()
        return connection.getresponse().status
    finally:
        connection.close()


def notification(sub: GraphSubscription, client_state: str = SECRET) -> bytes:
    item = {"subscriptionId": sub.graph_id, "clientState": client_state, "changeType": "created"}
    return json.dumps({"value": [item]}).encode()


def test_the_handshake_echoes_the_token_through_the_fast_path(asgi_server):
    token = "Validation: Testing client application reachability <&>"

    for path in ("/api/v1/webhooks/microsoft", "/api/v1/webhooks/microsoft/lifecycle"):
        status, body = post(f"{asgi_server}{path}?validationToken={quote(token)}")
        assert (status, body.decode()) == (200, token)


def test_a_verified_burst_schedules_one_round_and_notes_the_notification(asgi_server, subscription):
    url = f"{asgi_server}/api/v1/webhooks/microsoft"

    answers = [post(url, notification(subscription))[0] for _ in range(20)]

    assert answers == [202] * 20
    subscription.refresh_from_db()
    assert subscription.last_notification_at is not None
    assert cache.get(subscriptions.pending_key("mail_folder", 424242)) == 1


def test_forged_malformed_and_oversized_bodies_are_refused(asgi_server, subscription):
    url = f"{asgi_server}/api/v1/webhooks/microsoft"

    assert post(url, notification(subscription, client_state="guess"))[0] == 403
    assert post(url, b"{not json")[0] == 400
    assert post(url, b'{"value": []}')[0] == 400
    assert declared_too_large(url, 2_000_000) == 413
    subscription.refresh_from_db()
    assert subscription.last_notification_at is None


def test_other_methods_and_paths_still_reach_django(asgi_server):
    assert post(f"{asgi_server}/api/v1/webhooks/microsoft/other")[0] == 404
    request = urllib.request.Request(f"{asgi_server}/api/v1/webhooks/microsoft")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 405
