"""`createagent` makes an agent who can sign in at once."""

import pytest
from django.core.management import CommandError, call_command

from crm.models import Team, TeamMembership, User

pytestmark = pytest.mark.django_db


def test_creates_an_agent_and_team_who_can_sign_in_at_once(client, capsys):
    call_command(
        "createagent", "Sam@Support.example", "--password", "a long passphrase", "--team", "Billing"
    )

    assert "Created agent sam@support.example in team Billing." in capsys.readouterr().out
    user = User.objects.get(email="sam@support.example")
    assert TeamMembership.objects.filter(user=user, team__name="Billing", is_lead=False).exists()
    assert user.profile.role == "agent"
    assert user.is_staff is False
    response = client.post(
        "/accounts/login/", {"login": "sam@support.example", "password": "a long passphrase"}
    )
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_running_again_updates_role_and_password_without_duplicates(client, capsys):
    call_command(
        "createagent", "lee@support.example", "--password", "first passphrase", "--team", "Billing"
    )
    call_command(
        "createagent",
        "LEE@support.example",
        "--password",
        "second passphrase",
        "--team",
        "Billing",
        "--role",
        "lead",
    )

    assert "Updated lead lee@support.example" in capsys.readouterr().out
    user = User.objects.get(email="lee@support.example")
    assert User.objects.filter(email__iexact="lee@support.example").count() == 1
    assert Team.objects.filter(name="Billing").count() == 1
    assert user.profile.role == "lead"
    assert user.is_staff is True
    assert user.groups.filter(name="Leads").exists()
    assert TeamMembership.objects.get(user=user).is_lead is True
    assert client.login(email="lee@support.example", password="second passphrase")


def test_admin_role_makes_a_superuser():
    call_command(
        "createagent", "root@support.example", "--password", "x-long-passphrase", "--role", "admin"
    )

    user = User.objects.get(email="root@support.example")
    assert user.is_superuser
    assert user.is_staff


def test_bad_arguments_are_refused_clearly():
    with pytest.raises(CommandError, match="not an email address"):
        call_command("createagent", "not-an-address", "--password", "x")
    with pytest.raises(CommandError, match="invalid choice"):
        call_command("createagent", "a@b.example", "--role", "owner")
