"""App-secret expiry: recorded in admin, warned about by email before it runs out, shown on the
admin index and in /readyz; and the admin-alert email every app uses."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from crm import alerts
from crm.models import GraphAppSecret, User
from crm.tasks import app_secrets_check
from tests.crm.factories import UserFactory

EXPIRY = datetime(2030, 6, 30, 12, 0, tzinfo=UTC)
CLIENT_ID = "8a1f2c3d-0000-4b5e-9c8d-123456789abc"


@pytest.fixture(autouse=True)
def _alert_settings(settings):
    settings.APP_SECRET_WARN_DAYS = [30, 7, 1]
    settings.EMAIL_SUBJECT_PREFIX = "[Support CRM] "
    settings.DEFAULT_FROM_EMAIL = "crm@support.example"
    settings.ADMINS = []
    settings.MS_CLIENT_ID = CLIENT_ID
    settings.PUBLIC_BASE_URL = "https://crm.support.example"


@pytest.fixture
def root(db) -> User:
    return User.objects.create_superuser(email="root@support.example", password="x" * 20)


@pytest.fixture
def admin_client(client, root):
    client.force_login(root)
    return client


@pytest.fixture
def secret(db) -> GraphAppSecret:
    return alerts.app_secret_save(
        secret=GraphAppSecret(
            client_id=CLIENT_ID,
            label="CRM production secret",
            expires_at=EXPIRY,
            note="Key Vault kv-crm-prod",
        )
    )


def split_datetime(moment: datetime) -> dict[str, str]:
    """The admin's split date/time widget, in the time zone the admin shows (UTC here)."""
    local = timezone.localtime(moment)
    return {"expires_at_0": f"{local:%Y-%m-%d}", "expires_at_1": f"{local:%H:%M:%S}"}


def days_before(days: float) -> datetime:
    return EXPIRY - timedelta(days=days)


# --- admin --------------------------------------------------------------------------------------


def test_admin_refuses_a_secret_without_client_id_when_ms_client_id_is_unset(
    admin_client, settings
):
    settings.MS_CLIENT_ID = ""
    form = {"client_id": "", "label": "CRM production secret", "note": ""}

    response = admin_client.post("/admin/crm/graphappsecret/add/", form | split_datetime(EXPIRY))

    assert response.status_code == 200
    assert "MS_CLIENT_ID is not set, so there is no default" in response.content.decode()
    assert not GraphAppSecret.objects.exists()


def test_admin_refuses_a_client_id_with_spaces_and_a_missing_expiry(admin_client):
    form = {"client_id": "my app", "label": "CRM production secret", "note": ""}

    response = admin_client.post("/admin/crm/graphappsecret/add/", form)

    page = response.content.decode()
    assert response.status_code == 200
    assert "This field is required." in page  # the expiry
    assert "An application (client) ID has no spaces." in page
    assert not GraphAppSecret.objects.exists()


def test_admin_adds_a_secret_for_the_configured_app_and_lists_days_left_and_state(
    admin_client,
):
    add_page = admin_client.get("/admin/crm/graphappsecret/add/").content.decode()
    assert f'value="{CLIENT_ID}"' in add_page  # MS_CLIENT_ID is the default
    expires_at = timezone.now().replace(microsecond=0) + timedelta(days=10, hours=1)
    form = {"client_id": CLIENT_ID, "label": "CRM production secret", "note": "Key Vault"}

    response = admin_client.post(
        "/admin/crm/graphappsecret/add/", form | split_datetime(expires_at)
    )

    assert response.status_code == 302
    secret = GraphAppSecret.objects.get()
    assert (secret.client_id, secret.expires_at) == (CLIENT_ID, expires_at)
    listing = admin_client.get("/admin/crm/graphappsecret/").content.decode()
    assert "CRM production secret" in listing
    assert '<td class="field-days_left">10</td>' in listing
    assert "expires soon" in listing


def test_admin_search_finds_a_secret_by_its_note(admin_client, secret):
    found = admin_client.get("/admin/crm/graphappsecret/", {"q": "kv-crm-prod"})
    missed = admin_client.get("/admin/crm/graphappsecret/", {"q": "nothing-like-it"})

    assert "CRM production secret" in found.content.decode()
    assert "CRM production secret" not in missed.content.decode()


def test_the_daily_check_is_installed_as_a_beat_schedule(db):
    task = PeriodicTask.objects.get(name="crm: warn before app secrets expire")

    assert task.task == "crm.tasks.app_secrets_check"
    assert task.interval.every == 24 * 3600


# --- warnings by email --------------------------------------------------------------------------


def test_each_threshold_warns_once_and_expiry_once(root, secret, mailoutbox):
    sent_per_run = []
    for now in [
        days_before(40),  # nothing yet
        days_before(20),  # the 30-day warning
        days_before(19),  # already sent
        days_before(6.5),  # the 7-day warning
        days_before(6),
        days_before(0.5),  # the 1-day warning
        days_before(0.25),
        days_before(-0.1),  # expired
        days_before(-3),
    ]:
        sent_per_run.append(alerts.app_secrets_warn_due(now=now))

    assert sent_per_run == [0, 1, 0, 1, 0, 1, 0, 1, 0]
    assert [mail.subject for mail in mailoutbox] == [
        "[Support CRM] Microsoft 365 app secret “CRM production secret” expires in 20 days",
        "[Support CRM] Microsoft 365 app secret “CRM production secret” expires in 6 days",
        "[Support CRM] Microsoft 365 app secret “CRM production secret” expires in 12 hours",
        "[Support CRM] Microsoft 365 app secret “CRM production secret” has expired",
    ]
    secret.refresh_from_db()
    assert secret.warned_days == [30, 7, 1]
    assert secret.expired_warned_at == days_before(-0.1)


def test_several_thresholds_crossed_between_runs_give_one_email(root, secret, mailoutbox):
    assert alerts.app_secrets_warn_due(now=days_before(5)) == 1
    assert alerts.app_secrets_warn_due(now=days_before(5)) == 0

    assert len(mailoutbox) == 1
    secret.refresh_from_db()
    assert secret.warned_days == [30, 7]


def test_the_email_says_which_app_and_secret_when_and_what_to_do(root, secret, mailoutbox):
    alerts.app_secrets_warn_due(now=days_before(7))

    (mail,) = mailoutbox
    assert mail.from_email == "crm@support.example"
    assert "The client secret “CRM production secret”" in mail.body
    assert f"app registration {CLIENT_ID} expires in 7 days, on 2030-06-30 12:00 UTC" in mail.body
    assert "Entra ID > App registrations" in mail.body
    assert "Certificates & secrets and create a new client secret" in mail.body
    assert "MS_CLIENT_SECRET (stored: Key Vault kv-crm-prod)" in mail.body
    assert f"https://crm.support.example/admin/crm/graphappsecret/{secret.pk}/change/" in mail.body


def test_a_new_expiry_entered_in_admin_warns_again_from_the_first_threshold(
    admin_client, secret, mailoutbox, eager_celery
):
    alerts.app_secrets_warn_due(now=days_before(20))
    alerts.app_secrets_warn_due(now=days_before(-1))
    assert len(mailoutbox) == 2
    rotated = timezone.now().replace(microsecond=0) + timedelta(days=25)
    form = {"client_id": CLIENT_ID, "label": "CRM production secret", "note": "Key Vault"}

    response = admin_client.post(
        f"/admin/crm/graphappsecret/{secret.pk}/change/", form | split_datetime(rotated)
    )
    assert response.status_code == 302
    app_secrets_check.delay()
    app_secrets_check.delay()

    assert len(mailoutbox) == 3
    assert mailoutbox[2].subject.endswith("expires in 24 days")
    secret.refresh_from_db()
    assert secret.expires_at == rotated
    assert secret.warned_days == [30]
    assert secret.expired_warned_at is None


def test_a_secret_far_from_expiry_sends_nothing(root, mailoutbox, eager_celery):
    GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Next year's", expires_at=timezone.now() + timedelta(days=365)
    )

    app_secrets_check.delay()

    assert mailoutbox == []


# --- email_admins -------------------------------------------------------------------------------


def test_email_admins_writes_once_to_active_superusers_and_settings_admins(
    root, settings, mailoutbox
):
    UserFactory(email="agent@support.example")  # not a superuser
    User.objects.create_superuser(email="gone@support.example", password="x" * 20, is_active=False)
    User.objects.create_superuser(email="Second@Support.example", password="x" * 20)
    settings.ADMINS = [("Ops", "ops@support.example"), ("Root again", "ROOT@support.example")]

    count = alerts.email_admins("Mailbox not synced", "support@ has not synced for 2 hours.")

    assert count == 3
    (mail,) = mailoutbox
    assert mail.to == ["root@support.example", "second@support.example", "ops@support.example"]
    assert mail.subject == "[Support CRM] Mailbox not synced"
    assert mail.from_email == "crm@support.example"
    assert mail.body == "support@ has not synced for 2 hours."


def test_email_admins_with_nobody_to_write_to_logs_and_sends_nothing(db, mailoutbox, caplog):
    UserFactory(email="agent@support.example")

    with caplog.at_level(logging.WARNING, logger="crm.alerts"):
        count = alerts.email_admins("Mailbox not synced", "body")

    assert count == 0
    assert mailoutbox == []
    assert "No admin has an email address" in caplog.text


def test_a_warning_nobody_received_is_not_recorded_and_is_tried_again(db, secret, mailoutbox):
    assert alerts.app_secrets_warn_due(now=days_before(3)) == 0
    secret.refresh_from_db()
    assert secret.warned_days == []

    User.objects.create_superuser(email="root@support.example", password="x" * 20)
    assert alerts.app_secrets_warn_due(now=days_before(3)) == 1
    assert len(mailoutbox) == 1


# --- admin index and /readyz --------------------------------------------------------------------


def test_admin_index_shows_a_notice_for_expiring_and_expired_secrets(admin_client):
    soon = GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Soon", expires_at=timezone.now() + timedelta(days=12)
    )
    GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Gone", expires_at=timezone.now() - timedelta(days=1)
    )
    GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Fine", expires_at=timezone.now() + timedelta(days=300)
    )

    page = admin_client.get("/admin/").content.decode()

    assert 'class="messagelist crm-admin-notices"' in page
    assert '<li class="error">The Microsoft 365 app secret “Gone”' in page
    assert '<li class="warning">The Microsoft 365 app secret “Soon”' in page
    assert "expires in 11 days" in page
    assert f'href="/admin/crm/graphappsecret/{soon.pk}/change/"' in page
    assert "“Fine”" not in page
    assert page.index("crm-admin-notices") < page.index('id="content-main"')  # above the apps


def test_admin_index_has_no_notice_box_when_every_secret_is_fine(admin_client):
    GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Fine", expires_at=timezone.now() + timedelta(days=300)
    )

    page = admin_client.get("/admin/").content.decode()

    assert "crm-admin-notices" not in page


def test_readyz_reports_an_expired_secret_without_failing_or_naming_it(client, db, settings):
    settings.MS_CLIENT_SECRET = "s3cret"
    GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Gone", expires_at=timezone.now() - timedelta(days=1)
    )
    later = GraphAppSecret.objects.create(
        client_id=CLIENT_ID, label="Next", expires_at=timezone.now() + timedelta(days=5, hours=1)
    )

    response = client.get("/readyz")

    assert response.status_code == 200
    report = response.json()["checks"]["app_secrets"]
    assert report == {
        "ok": False,
        "recorded": 2,
        "expired": 1,
        "expiring_soon": 1,
        "next_expiry": later.expires_at.isoformat(),
        "days_left": 5,
    }
    assert "Gone" not in response.content.decode()
    assert CLIENT_ID not in response.content.decode()


def test_readyz_says_when_a_secret_is_configured_but_its_expiry_is_not_recorded(
    client, db, settings
):
    settings.MS_CLIENT_SECRET = "s3cret"

    report = client.get("/readyz").json()["checks"]["app_secrets"]

    assert report["ok"] is True
    assert report["detail"] == "MS_CLIENT_SECRET is set but its expiry is not recorded in admin"
