"""The agent's profile page and password reset, through HTTP."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from crm import services as crm_services
from crm.errors import ServiceError
from crm.models import AgentProfile
from tests.cases.factories import DEFAULT_PASSWORD, make_agent
from tests.crm.factories import UserFactory

pytestmark = pytest.mark.django_db


def valid_profile(**overrides) -> dict[str, str]:
    return {
        "signature": "Dana\nSupport team",
        "timezone": "Europe/Berlin",
        "availability": "away",
        "notify_assigned": "on",
        "notify_sla_risk": "on",
        **overrides,
    }


def test_profile_shows_the_agents_settings_and_account_links(web, agent, team):
    agent.profile.signature = "Kind regards, Dana"
    agent.profile.timezone = "America/New_York"
    agent.profile.save()

    response = web.get("/profile/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "Kind regards, Dana" in page
    assert '<option value="America/New_York" selected>' in page
    assert '<optgroup label="Europe">' in page
    assert team.name in page
    assert 'href="/accounts/password/change/"' in page
    assert 'href="/accounts/2fa/"' in page
    assert 'href="/accounts/email/"' in page


def test_saving_the_profile(web, agent):
    response = web.post("/profile/", valid_profile())

    profile = AgentProfile.objects.get(user=agent)
    assert response.status_code == 302
    assert profile.signature == "Dana\nSupport team"
    assert profile.timezone == "Europe/Berlin"
    assert profile.availability == "away"
    assert (
        profile.notify_assigned,
        profile.notify_mentioned,
        profile.notify_customer_reply,
        profile.notify_sla_risk,
    ) == (True, False, False, True)
    assert "Your profile is saved." in web.get("/profile/").content.decode()


def test_an_unknown_time_zone_is_refused_and_nothing_changes(web, agent):
    response = web.post("/profile/", valid_profile(timezone="Mars/Olympus_Mons", signature="new"))

    agent.profile.refresh_from_db()
    assert response.status_code == 400
    assert "Select a valid choice. Mars/Olympus_Mons" in response.content.decode()
    assert agent.profile.timezone == "UTC"
    assert agent.profile.signature == ""


def test_an_agent_cannot_give_themselves_a_role_or_capacity(web, agent):
    web.post("/profile/", valid_profile(role="admin", capacity="999", paused="on"))

    agent.profile.refresh_from_db()
    assert agent.profile.role == "agent"
    assert agent.profile.capacity == 20
    assert agent.profile.paused is False


def test_an_agent_without_a_profile_gets_one_on_first_save():
    user = UserFactory()
    client = Client()
    client.force_login(user)

    shown = client.get("/profile/")
    assert shown.status_code == 200
    assert not AgentProfile.objects.filter(user=user).exists()  # looking writes nothing

    client.post("/profile/", valid_profile(timezone="Asia/Tokyo"))

    assert AgentProfile.objects.get(user=user).timezone == "Asia/Tokyo"


def test_the_service_refuses_fields_an_agent_may_not_set(agent):
    with pytest.raises(ServiceError, match="Cannot change role here"):
        crm_services.agent_profile_update(profile=agent.profile, role="admin")


def test_the_service_validates_the_time_zone(agent):
    with pytest.raises(ServiceError) as raised:
        crm_services.agent_profile_update(profile=agent.profile, timezone="Nowhere/Land")

    assert raised.value.field == "timezone"
    assert "not a known time zone" in raised.value.message


def test_profile_needs_sign_in(client):
    assert client.get("/profile/")["Location"].startswith("/accounts/login/")


# --- password reset -----------------------------------------------------------------------


def test_password_reset_from_the_sign_in_page_end_to_end(client):
    agent = make_agent(email="dana@support.example")

    sign_in = client.get("/accounts/login/").content.decode()
    assert 'href="/accounts/password/reset/"' in sign_in

    asked = client.post("/accounts/password/reset/", {"email": "Dana@Support.example"})
    assert asked.status_code == 302
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["dana@support.example"]
    reset_link = re.search(r"https?://[^/]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body)

    form_page = client.get(reset_link.group(1), follow=True)
    set_password_url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else None
    set_password_url = set_password_url or reset_link.group(1)
    new_password = "a fresh horse battery staple"
    done = client.post(set_password_url, {"password1": new_password, "password2": new_password})

    assert done.status_code == 302
    agent.refresh_from_db()
    assert agent.check_password(new_password)
    assert not agent.check_password(DEFAULT_PASSWORD)
    signed_in = Client().post(
        "/accounts/login/", {"login": "dana@support.example", "password": new_password}
    )
    assert signed_in.status_code == 302


def test_a_reset_link_works_once(client):
    make_agent(email="dana@support.example")
    client.post("/accounts/password/reset/", {"email": "dana@support.example"})
    path = re.search(r"https?://[^/]+(/accounts/password/reset/key/\S+)", mail.outbox[0].body)
    form_page = client.get(path.group(1), follow=True)
    url = form_page.redirect_chain[-1][0] if form_page.redirect_chain else path.group(1)
    client.post(url, {"password1": "first new password 1", "password2": "first new password 1"})

    again = Client().get(path.group(1), follow=True)

    assert "Bad Token" in again.content.decode() or "invalid" in again.content.decode().lower()
