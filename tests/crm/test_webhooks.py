"""The Microsoft Graph webhooks through HTTP: handshake, verification, coalescing, bad input."""

from __future__ import annotations

import json
import logging
from urllib.parse import quote

import pytest
from django.core.cache import cache
from django.test import Client

from crm import webhooks
from crm.choices import SubscriptionState
from crm.graph import subscriptions
from crm.models import GraphSubscription

pytestmark = pytest.mark.django_db

URL = "/api/v1/webhooks/microsoft"
LIFECYCLE_URL = "/api/v1/webhooks/microsoft/lifecycle"
SECRET = "the-client-state-we-gave-graph"


@pytest.fixture
def rounds() -> list[int]:
    """A kind of resource registered like an app registers one; it records the rounds the
    webhook schedules."""
    scheduled: list[int] = []
    subscriptions.register(
        "test_kind", schedule_round=scheduled.append, target_exists=lambda target: True
    )
    cache.clear()
    subscriptions._known.clear()
    yield scheduled
    subscriptions._kinds.pop("test_kind", None)


@pytest.fixture
def subscription(rounds) -> GraphSubscription:
    return GraphSubscription.objects.create(
        kind="test_kind",
        target_id=7,
        resource="users/a@b.example/mailFolders('inbox')/messages",
        graph_id="7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        client_state_hash=subscriptions._digest(SECRET),
        state=SubscriptionState.ACTIVE,
    )


def notification(sub: GraphSubscription, *, client_state: str = SECRET, **extra) -> dict:
    return {
        "subscriptionId": sub.graph_id,
        "clientState": client_state,
        "changeType": "created",
        "resource": "Users/abc/Messages/AAMk1",
        "resourceData": {"id": "AAMk1"},
        "tenantId": "t",
        **extra,
    }


def post(client: Client, url: str, body: object, **headers) -> object:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


# --- the validation handshake -----------------------------------------------------------------


@pytest.mark.parametrize("url", [URL, LIFECYCLE_URL])
@pytest.mark.parametrize(
    "token",
    ["Validation: Testing client application reachability for subscription Request-Id: 1",
     "<script>alert(1)</script>", "ünïcødé ✓ & = ?"],
)  # fmt: skip
def test_the_validation_token_comes_back_exactly_as_plain_text(client, url, token):
    response = client.post(f"{url}?validationToken={quote(token)}")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response.content.decode() == token


def test_an_empty_or_giant_validation_token_is_refused(client):
    assert client.post(f"{URL}?validationToken=").status_code == 400
    assert client.post(f"{URL}?validationToken={'x' * 5000}").status_code == 400


def test_the_webhooks_need_no_session_and_no_csrf_token(subscription):
    strict = Client(enforce_csrf_checks=True)

    assert post(strict, URL, {"value": [notification(subscription)]}).status_code == 202
    assert strict.get(URL).status_code == 405


# --- notifications -------------------------------------------------------------------------------


def test_a_verified_notification_schedules_one_round_for_its_resource(client, subscription, rounds):
    response = post(client, URL, {"value": [notification(subscription)]})

    assert response.status_code == 202
    assert rounds == [7]
    subscription.refresh_from_db()
    assert subscription.last_notification_at is not None


def test_a_burst_with_duplicates_coalesces_into_one_round_until_the_round_starts(
    client, subscription, rounds
):
    for change in ["created", "updated", "created", "deleted", "updated"] * 10:
        post(client, URL, {"value": [notification(subscription, changeType=change)] * 3})

    assert rounds == [7]

    subscriptions.round_starting(kind="test_kind", target_id=7)
    post(client, URL, {"value": [notification(subscription)]})

    assert rounds == [7, 7]


def test_a_forged_client_state_is_refused_logged_and_schedules_nothing(
    client, subscription, rounds, caplog
):
    with caplog.at_level(logging.WARNING, logger="crm.webhooks"):
        response = post(client, URL, {"value": [notification(subscription, client_state="guess")]})

    assert response.status_code == 403
    assert rounds == []
    assert "wrong clientState" in caplog.text


@pytest.mark.parametrize(
    "item",
    [
        {"subscriptionId": "00000000-0000-0000-0000-000000000000", "clientState": SECRET},
        {"subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07"},
        {"clientState": SECRET},
        {"subscriptionId": ["a list"], "clientState": {"a": "dict"}},
    ],
)
def test_unknown_subscriptions_and_missing_fields_schedule_nothing(
    client, subscription, rounds, item
):
    assert post(client, URL, {"value": [item]}).status_code == 403
    assert rounds == []


def test_one_good_notification_among_forged_ones_is_accepted(client, subscription, rounds):
    body = {"value": [notification(subscription, client_state="no"), notification(subscription)]}

    assert post(client, URL, body).status_code == 202
    assert rounds == [7]


def test_an_inactive_subscription_is_not_notified(client, subscription, rounds):
    GraphSubscription.objects.filter(pk=subscription.pk).update(state=SubscriptionState.INACTIVE)
    subscriptions._forget(subscription.graph_id)

    assert post(client, URL, {"value": [notification(subscription)]}).status_code == 403
    assert rounds == []


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{not json", 400),
        (b"\xff\xfe\x00", 400),
        ("[]", 400),
        ({"value": []}, 400),
        ({"value": "x"}, 400),
        ({"value": [1, "two", None]}, 400),
        ({"nothing": True}, 400),
    ],
)
def test_malformed_bodies_get_a_400(client, subscription, rounds, body, status):
    assert post(client, URL, body).status_code == status
    assert rounds == []


def test_a_giant_payload_is_refused_before_it_is_read(client, subscription, rounds, settings):
    settings.WEBHOOK_MAX_BODY_BYTES = 10_000
    body = {"value": [notification(subscription, padding="x" * 20_000)]}

    assert post(client, URL, body).status_code == 413
    assert rounds == []


def test_a_flood_from_one_address_is_rate_limited(client, subscription, settings, monkeypatch):
    # One frozen second: the six requests fall into it however long each takes.
    monkeypatch.setattr(webhooks, "rate_window", webhooks.RateWindow(clock=lambda: 1000.0))
    settings.WEBHOOK_RATE_PER_SECOND = 3
    statuses = [post(client, URL, {"value": [notification(subscription)]}).status_code
                for _ in range(6)]  # fmt: skip

    assert 429 in statuses
    assert statuses[:3] == [202, 202, 202]


# --- lifecycle events ---------------------------------------------------------------------------


def test_lifecycle_events_are_verified_and_handled_in_the_worker(
    client, subscription, rounds, eager_celery
):
    event = {**notification(subscription), "lifecycleEvent": "missed"}

    response = post(client, LIFECYCLE_URL, {"value": [event]})

    assert response.status_code == 202
    assert rounds == [7]


def test_an_unknown_or_forged_lifecycle_event_does_nothing(client, subscription, rounds):
    unknown = {**notification(subscription), "lifecycleEvent": "somethingElse"}
    forged = {**notification(subscription, client_state="x"), "lifecycleEvent": "missed"}

    assert post(client, LIFECYCLE_URL, {"value": [unknown]}).status_code == 400
    assert post(client, LIFECYCLE_URL, {"value": [forged]}).status_code == 403
    assert rounds == []
