"""The back office: admins change everything through the services, leads only their own teams.

Everything here goes through HTTP requests to /admin/, as a person at the back office would.
"""

from __future__ import annotations

import csv
import io
import itertools

import pytest
from django import forms
from django.contrib.auth.models import Group
from django.core.management.sql import emit_post_migrate_signal
from django.db import connection
from django.test.utils import CaptureQueriesContext

from cases import services
from cases.admin.cases import NewCaseNoteInline
from cases.models import Case, Customer, Organization, Task, TimelineEvent
from crm import services as crm_services
from crm.models import AgentProfile, Tombstone, User
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db

CASES = "/admin/cases/case/"


def change_url(case: Case) -> str:
    return f"{CASES}{case.pk}/change/"


def field_values(form, prefix: str = "") -> dict:
    """A form's fields as the browser would post them unchanged."""
    data: dict = {}
    for name, field in form.fields.items():
        key = f"{prefix}{name}"
        value = form[name].value()
        if isinstance(field, forms.MultipleChoiceField | forms.ModelMultipleChoiceField):
            data[key] = [str(v) for v in value or ()]
        elif isinstance(field, forms.MultiValueField):
            for i, part in enumerate(field.widget.decompress(value)):
                data[f"{key}_{i}"] = "" if part is None else str(part)
        elif isinstance(field, forms.BooleanField):
            if value:
                data[key] = "on"
        else:
            data[key] = "" if value is None else str(value)
    return data


def posted_back(page, keep_inlines: bool = False, **changes) -> dict:
    """What the browser sends back when the form on `page` is saved with `changes` made:
    every field as shown, and every inline left empty (or, with `keep_inlines`, as shown)."""
    data = field_values(page.context["adminform"].form)
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        management = {"TOTAL_FORMS": 0, "INITIAL_FORMS": 0}
        if keep_inlines:
            management = {
                "TOTAL_FORMS": len(formset.forms),
                "INITIAL_FORMS": len(formset.initial_forms),
            }
            for form in formset.forms:
                data |= field_values(form, prefix=f"{form.prefix}-")
        data |= {f"{formset.prefix}-{key}": str(value) for key, value in management.items()}
        data |= {f"{formset.prefix}-MIN_NUM_FORMS": "0", f"{formset.prefix}-MAX_NUM_FORMS": "1000"}
    data |= {name: "" if value is None else value for name, value in changes.items()}
    return data


def with_new_note(data: dict, page, body: str) -> dict:
    inline = next(
        i for i in page.context["inline_admin_formsets"] if isinstance(i.opts, NewCaseNoteInline)
    )
    prefix = inline.formset.prefix
    return data | {f"{prefix}-TOTAL_FORMS": "1", f"{prefix}-0-body": body}


def run_action(client, action: str, cases: list[Case], **choices):
    return client.post(
        CASES,
        {
            "action": action,
            "_selected_action": [case.pk for case in cases],
            "index": "0",
            **choices,
        },
        follow=True,
    )


def messages_of(response) -> list[tuple[str, str]]:
    return [(message.level_tag, message.message) for message in response.context["messages"]]


def form_errors(response) -> dict[str, list[str]]:
    return response.context["adminform"].form.errors


def fresh(case: Case) -> Case:
    return Case.objects.get(pk=case.pk)


@pytest.fixture
def team():
    return TeamFactory(name="Support")


@pytest.fixture
def other_team():
    return TeamFactory(name="Billing")


@pytest.fixture
def admin_agent():
    return make_agent(role="admin")


@pytest.fixture
def as_admin(client, admin_agent):
    client.force_login(admin_agent)
    return client


# --- the change form goes through the services --------------------------------------------------


def test_an_admin_adds_a_case_and_the_timeline_records_its_creation(as_admin, team):
    # given
    agent = make_agent(team=team)
    page = as_admin.get(f"{CASES}add/")

    # when
    response = as_admin.post(
        f"{CASES}add/",
        posted_back(
            page,
            title="Printer on fire",
            team=team.pk,
            assignee=agent.pk,
            priority="high",
            tag_names="hardware, Urgent",
        ),
    )

    # then
    case = Case.objects.get(title="Printer on fire")
    assert response.status_code == 302
    assert case.number == f"CASE-{case.pk:06d}"
    assert (case.team, case.assignee, case.priority) == (team, agent, "high")
    assert sorted(case.tags.values_list("name", flat=True)) == ["hardware", "urgent"]
    assert list(case.timeline.values_list("kind", flat=True)) == ["created", "tags_changed"]
    assert case.timeline.first().summary == f"Case {case.number} created in Support"


def test_changing_the_status_in_the_change_form_writes_a_status_event(as_admin, team, admin_agent):
    # given
    case = CaseFactory(team=team)
    page = as_admin.get(change_url(case))

    # when
    response = as_admin.post(change_url(case), posted_back(page, status="in_progress"))

    # then
    assert response.status_code == 302
    assert fresh(case).status == "in_progress"
    event = case.timeline.get(kind="status_changed")
    assert (event.summary, event.actor) == ("Status: New → In progress", admin_agent)


def test_plain_field_changes_are_recorded_one_event_each(as_admin, team):
    # given
    case = CaseFactory(team=team, title="Old title")
    page = as_admin.get(change_url(case))

    # when
    as_admin.post(change_url(case), posted_back(page, title="New title", priority="urgent"))

    # then
    summaries = set(case.timeline.filter(kind="field_changed").values_list("summary", flat=True))
    assert summaries == {"Title: Old title → New title", "Priority: normal → urgent"}


def test_an_invalid_transition_shows_the_services_message_and_changes_nothing(as_admin, team):
    # given
    case = CaseFactory(team=team)
    services.case_change_status(actor=None, case=case, status="resolved")
    events_before = case.timeline.count()
    page = as_admin.get(change_url(case))

    # when
    response = as_admin.post(
        change_url(case), posted_back(page, status="awaiting_customer", title="Renamed")
    )

    # then
    assert response.status_code == 200
    assert form_errors(response)["status"] == ["A resolved case cannot become awaiting customer."]
    assert "A resolved case cannot become awaiting customer." in response.content.decode()
    assert (fresh(case).status, fresh(case).title) == ("resolved", case.title)
    assert case.timeline.count() == events_before


def test_assigning_to_an_agent_outside_the_team_shows_the_error(as_admin, team, other_team):
    # given
    case = CaseFactory(team=team)
    outsider = make_agent(team=other_team)
    page = as_admin.get(change_url(case))

    # when
    response = as_admin.post(change_url(case), posted_back(page, assignee=outsider.pk))

    # then
    assert response.status_code == 200
    assert form_errors(response)["assignee"] == [f"{outsider} is not a member of team Support."]
    assert fresh(case).assignee is None
    assert not case.timeline.filter(kind="assigned").exists()


def test_a_refusal_the_form_could_not_foresee_rolls_the_whole_save_back(
    as_admin, team, monkeypatch
):
    # given: another agent resolved the case after the form checked the transition
    case = CaseFactory(team=team, title="Old title")
    page = as_admin.get(change_url(case))
    services.case_change_status(actor=None, case=case, status="resolved")
    monkeypatch.setattr("cases.admin.cases.validate_transition", lambda **kwargs: None)
    events_before = case.timeline.count()

    # when
    response = as_admin.post(
        change_url(case), posted_back(page, title="New title", status="awaiting_customer")
    )

    # then
    assert response.status_code == 302
    assert response["Location"] == change_url(case)
    assert (fresh(case).title, fresh(case).status) == ("Old title", "resolved")
    assert case.timeline.count() == events_before
    followed = as_admin.get(response["Location"])
    assert messages_of(followed) == [("error", "A resolved case cannot become awaiting customer.")]


def test_making_a_case_its_own_grandparent_is_refused(as_admin, team):
    # given
    parent = CaseFactory(team=team)
    child = CaseFactory(team=team, parent=parent)
    page = as_admin.get(change_url(parent))

    # when
    response = as_admin.post(change_url(parent), posted_back(page, parent=child.pk))

    # then
    assert form_errors(response)["parent"] == ["A case cannot be its own ancestor."]
    assert fresh(parent).parent is None


def test_a_note_added_on_the_case_page_goes_through_the_service(as_admin, team):
    # given
    case = CaseFactory(team=team)
    colleague = make_agent(team=team, email="kim@support.example")
    page = as_admin.get(change_url(case))

    # when
    response = as_admin.post(
        change_url(case), with_new_note(posted_back(page), page, "Ask @kim about the toner")
    )

    # then
    assert response.status_code == 302
    note = case.notes.get()
    assert list(note.mentions.all()) == [colleague]
    assert case.timeline.get(kind="note_added").summary == f"Internal note mentioning {colleague}"


def test_the_timeline_on_a_case_page_cannot_be_edited(as_admin, team):
    # given
    case = CaseFactory(team=team)

    # when
    page = as_admin.get(change_url(case))

    # then
    timeline = next(
        i for i in page.context["inline_admin_formsets"] if i.formset.model is TimelineEvent
    )
    assert (timeline.has_add_permission, timeline.has_change_permission) == (False, False)
    assert timeline.has_delete_permission is False
    assert f"Case {case.number} created in Support" in page.content.decode()
    assert (
        as_admin.get(f"/admin/cases/timelineevent/{case.timeline.get().pk}/delete/").status_code
        == 403
    )


# --- leads and agents ---------------------------------------------------------------------------


@pytest.fixture
def two_teams(team, other_team):
    lead = make_agent(team=team, role="lead")
    return {
        "lead": lead,
        "member_a": make_agent(team=team),
        "member_b": make_agent(team=other_team),
        "case_a": CaseFactory(team=team),
        "case_b": CaseFactory(team=other_team),
    }


def test_a_lead_sees_their_teams_cases_but_not_another_teams(client, two_teams):
    # given
    client.force_login(two_teams["lead"])

    # when
    response = client.get(CASES)

    # then
    assert response.status_code == 200
    assert list(response.context["cl"].result_list) == [two_teams["case_a"]]
    assert two_teams["case_b"].number not in response.content.decode()


def test_a_lead_gets_404_for_another_teams_case_and_cannot_change_it(client, two_teams, other_team):
    # given
    case_b = two_teams["case_b"]
    client.force_login(two_teams["lead"])

    # when
    page = client.get(change_url(case_b))
    post = client.post(
        change_url(case_b), {"title": "Taken over", "team": other_team.pk, "status": "closed"}
    )

    # then
    assert (page.status_code, post.status_code) == (404, 404)
    assert (fresh(case_b).title, fresh(case_b).status) == (case_b.title, "new")


def test_a_lead_may_only_look_at_a_case_of_a_team_they_merely_belong_to(
    client, two_teams, other_team
):
    # given: the lead is a plain member of the other team
    crm_services.team_membership_set(team=other_team, user=two_teams["lead"])
    case_b = two_teams["case_b"]
    client.force_login(two_teams["lead"])

    # when
    page = client.get(change_url(case_b))
    post = client.post(change_url(case_b), {"title": "Taken over", "team": other_team.pk})

    # then
    assert page.status_code == 200
    assert page.context["title"] == "View case"
    assert post.status_code == 403
    assert fresh(case_b).title == case_b.title


def test_a_lead_changes_their_teams_case_through_the_services(client, two_teams):
    # given
    case_a, member_a = two_teams["case_a"], two_teams["member_a"]
    client.force_login(two_teams["lead"])
    page = client.get(change_url(case_a))

    # when
    response = client.post(change_url(case_a), posted_back(page, assignee=member_a.pk))

    # then
    assert response.status_code == 302
    assert fresh(case_a).assignee == member_a
    assert case_a.timeline.get(kind="assigned").actor == two_teams["lead"]


def test_a_lead_cannot_move_a_case_to_a_team_they_do_not_lead(client, two_teams, other_team):
    # given
    case_a = two_teams["case_a"]
    client.force_login(two_teams["lead"])
    page = client.get(change_url(case_a))

    # when
    response = client.post(change_url(case_a), posted_back(page, team=other_team.pk))

    # then
    assert response.status_code == 200
    assert "team" in form_errors(response)
    assert fresh(case_a).team == case_a.team


def test_a_leads_autocomplete_offers_only_their_teams_and_members(client, two_teams, team):
    # given
    client.force_login(two_teams["lead"])

    def offered(field: str) -> set[str]:
        response = client.get(
            "/admin/autocomplete/",
            {"app_label": "cases", "model_name": "case", "field_name": field, "term": ""},
        )
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    # when / then
    assert offered("team") == {str(team.pk)}
    assert offered("assignee") == {str(two_teams["lead"].pk), str(two_teams["member_a"].pk)}
    assert offered("parent") == {str(two_teams["case_a"].pk)}


def test_a_plain_agent_cannot_enter_the_admin(client, team):
    # given
    agent = make_agent(team=team)
    client.force_login(agent)

    # when
    index = client.get("/admin/")
    cases = client.get(CASES)

    # then
    assert index.status_code == 302
    assert index["Location"] == "/admin/login/?next=/admin/"
    assert cases.status_code == 302
    assert cases["Location"].startswith("/admin/login/")


def test_migrate_installs_the_leads_group_with_what_leads_need(team):
    # given: a database where the group does not exist yet
    Group.objects.filter(name="Leads").delete()

    # when
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    lead = make_agent(team=team, role="lead")

    # then
    granted = {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name="Leads").permissions.all()
    }
    assert {
        "cases.view_case",
        "cases.add_case",
        "cases.change_case",
        "cases.add_casenote",
        "cases.change_customer",
        "cases.add_caselink",
        "cases.view_timelineevent",
        "crm.view_team",
        "crm.add_teammembership",
        "crm.delete_teammembership",
        "crm.change_agentprofile",
        "crm.view_user",
    } <= granted
    assert not granted & {
        "cases.delete_case",
        "cases.change_timelineevent",
        "crm.change_team",
        "crm.change_user",
        "crm.add_apitoken",
    }
    assert (lead.is_staff, lead.is_superuser) == (True, False)
    assert User.objects.get(pk=lead.pk).has_perm("cases.change_case")


def test_a_lead_pauses_a_member_but_cannot_reach_other_teams_profiles(client, two_teams):
    # given
    member_a, member_b = two_teams["member_a"], two_teams["member_b"]
    client.force_login(two_teams["lead"])
    url_a = f"/admin/crm/agentprofile/{member_a.profile.pk}/change/"
    page = client.get(url_a)

    # when
    response = client.post(url_a, posted_back(page, paused="on", capacity="5"))
    other = client.get(f"/admin/crm/agentprofile/{member_b.profile.pk}/change/")

    # then
    assert response.status_code == 302
    profile = AgentProfile.objects.get(user=member_a)
    assert (profile.paused, profile.capacity, profile.role) == (True, 5, "agent")
    assert "role" not in page.context["adminform"].form.fields
    assert other.status_code == 404


def test_a_lead_cannot_change_users_nor_make_anyone_an_admin(client, two_teams):
    # given
    member_a = two_teams["member_a"]
    client.force_login(two_teams["lead"])
    url = f"/admin/crm/user/{member_a.pk}/change/"

    # when
    page = client.get(url)
    post = client.post(url, {"email": member_a.email, "is_superuser": "on", "is_staff": "on"})
    outside = client.get(f"/admin/crm/user/{two_teams['member_b'].pk}/change/")

    # then
    assert page.status_code == 200
    assert page.context["title"] == "View user"
    assert post.status_code == 403
    assert outside.status_code == 404
    member_a.refresh_from_db()
    assert (member_a.is_staff, member_a.is_superuser) == (False, False)


def test_a_lead_adds_a_member_to_the_team_they_lead_only(client, two_teams, team, other_team):
    # given
    newcomer = make_agent()
    client.force_login(two_teams["lead"])
    url = "/admin/crm/teammembership/add/"

    # when
    added = client.post(url, {"team": team.pk, "user": newcomer.pk, "is_lead": ""})
    refused = client.post(url, {"team": other_team.pk, "user": newcomer.pk, "is_lead": ""})

    # then
    assert added.status_code == 302
    assert set(newcomer.memberships.values_list("team__name", flat=True)) == {"Support"}
    assert refused.status_code == 200
    assert "team" in refused.context["adminform"].form.errors


def test_an_admin_creates_an_agent_who_can_sign_in(as_admin, team):
    # when
    response = as_admin.post(
        "/admin/crm/user/add/",
        {
            "email": "New.Lead@Support.example",
            "first_name": "Nia",
            "last_name": "Lead",
            "role": "lead",
            "team": team.pk,
            "usable_password": "true",
            "password1": "a long enough passphrase",
            "password2": "a long enough passphrase",
        },
    )

    # then
    assert response.status_code == 302
    user = User.objects.get(email="new.lead@support.example")
    assert user.check_password("a long enough passphrase")
    assert (user.profile.role, user.is_staff, user.is_superuser) == ("lead", True, False)
    assert user.groups.filter(name="Leads").exists()
    assert user.memberships.get().is_lead


def test_changing_a_role_in_admin_changes_the_agents_access(as_admin, team):
    # given
    agent = make_agent(team=team)
    url = f"/admin/crm/agentprofile/{agent.profile.pk}/change/"
    page = as_admin.get(url)

    # when
    as_admin.post(url, posted_back(page, role="lead"))

    # then
    agent.refresh_from_db()
    assert agent.is_staff
    assert agent.groups.filter(name="Leads").exists()


def test_an_admin_deletes_a_case_with_its_history_through_the_service(as_admin, team):
    # given
    case = CaseFactory(team=team)
    task = TaskFactory(case=case, assignee=make_agent(team=team))
    services.case_add_note(actor=None, case=case, body="Internal")
    url = f"{CASES}{case.pk}/delete/"

    # when
    confirm = as_admin.get(url)
    response = as_admin.post(url, {"post": "yes"})

    # then
    assert confirm.context["perms_lacking"] == set()
    assert response.status_code == 302
    assert not Case.objects.filter(pk=case.pk).exists()
    assert not TimelineEvent.objects.filter(case_id=case.pk).exists()
    assert Tombstone.objects.filter(item_type="cases.task", item_id=task.pk).exists()


def test_an_admin_deletes_an_agent_with_their_profile(as_admin, team):
    # given
    agent = make_agent(team=team)
    url = f"/admin/crm/user/{agent.pk}/delete/"

    # when
    response = as_admin.post(url, {"post": "yes"})

    # then
    assert response.status_code == 302
    assert not User.objects.filter(pk=agent.pk).exists()


def test_an_admin_makes_an_agent_a_lead_of_a_second_team_on_the_user_page(
    as_admin, team, other_team
):
    # given
    agent = make_agent(team=team)
    url = f"/admin/crm/user/{agent.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page, keep_inlines=True)
    data |= {"profile-0-role": "lead", "profile-0-capacity": "7"}
    data |= {
        "memberships-TOTAL_FORMS": "2",
        "memberships-1-team": str(other_team.pk),
        "memberships-1-is_lead": "on",
    }

    # when
    response = as_admin.post(url, data)

    # then
    assert response.status_code == 302
    agent.refresh_from_db()
    assert (agent.profile.role, agent.profile.capacity, agent.is_staff) == ("lead", 7, True)
    assert agent.groups.filter(name="Leads").exists()
    assert set(agent.memberships.values_list("team__name", "is_lead")) == {
        ("Support", False),
        ("Billing", True),
    }


def test_an_admin_removes_a_member_on_the_team_page(as_admin, team):
    # given
    leaving, staying = make_agent(team=team), make_agent(team=team)
    url = f"/admin/crm/team/{team.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page, keep_inlines=True)
    row = next(
        form.prefix
        for form in page.context["inline_admin_formsets"][0].formset.forms
        if form.instance.user_id == leaving.pk
    )

    # when
    response = as_admin.post(url, data | {f"{row}-DELETE": "on"})

    # then
    assert response.status_code == 302
    assert list(team.members.all()) == [staying]


def test_a_task_checklist_edited_in_admin_is_written_by_the_service(as_admin, team):
    # given
    task = TaskFactory(case=CaseFactory(team=team), assignee=make_agent(team=team))
    url = f"/admin/cases/task/{task.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page, keep_inlines=True)
    data |= {"checklist-0-text": "Unplug it", "checklist-0-position": "1", "checklist-0-done": "on"}

    # when
    response = as_admin.post(url, data)

    # then
    assert response.status_code == 302
    updated = Task.objects.get(pk=task.pk)
    assert [(i.text, i.done) for i in updated.checklist.all()] == [("Unplug it", True)]
    assert updated.change_seq > task.change_seq


def test_an_organization_added_in_admin_keeps_its_domains_lower_case(as_admin):
    # given
    page = as_admin.get("/admin/cases/organization/add/")
    data = posted_back(page, keep_inlines=True, name="Initech", tier="gold")
    data |= {"domains-0-domain": "@Initech.COM"}

    # when
    response = as_admin.post("/admin/cases/organization/add/", data)

    # then
    assert response.status_code == 302
    organization = Organization.objects.get(name="Initech")
    assert list(organization.domains.values_list("domain", flat=True)) == ["initech.com"]


def test_a_domain_that_is_not_one_is_refused_with_the_services_message(as_admin):
    # given
    organization = OrganizationFactory(domains=["acme.example"])
    url = f"/admin/cases/organization/{organization.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page, keep_inlines=True) | {"domains-1-domain": "not a domain"}

    # when
    response = as_admin.post(url, data)

    # then
    domains = response.context["inline_admin_formsets"][0].formset
    assert domains.errors[1]["domain"] == ["“not a domain” is not an email domain."]
    assert list(organization.domains.values_list("domain", flat=True)) == ["acme.example"]


def test_a_link_made_in_admin_is_on_both_timelines(as_admin, team):
    # given
    first, second = CaseFactory(team=team), CaseFactory(team=team)

    # when
    response = as_admin.post(
        "/admin/cases/caselink/add/",
        {"from_case": first.pk, "to_case": second.pk, "kind": "duplicate"},
    )

    # then
    assert response.status_code == 302
    assert (
        first.timeline.get(kind="linked").summary == f"Linked (duplicate of) with {second.number}"
    )
    assert (
        second.timeline.get(kind="linked").summary == f"Linked (duplicate of) with {first.number}"
    )


# --- bulk actions -------------------------------------------------------------------------------


def test_bulk_assign_gives_the_selected_cases_to_the_chosen_agent(as_admin, team):
    # given
    agent = make_agent(team=team)
    cases = [CaseFactory(team=team), CaseFactory(team=team)]

    # when
    response = run_action(as_admin, "assign_selected", cases, assignee=agent.pk)

    # then
    assert all(fresh(case).assignee == agent for case in cases)
    assert all(case.timeline.filter(kind="assigned").exists() for case in cases)
    assert messages_of(response) == [
        ("success", f"Assigned {cases[0].number}, {cases[1].number} to {agent}.")
    ]


def test_bulk_assign_reports_the_case_whose_team_the_agent_is_not_in(as_admin, team, other_team):
    # given
    agent = make_agent(team=team)
    ours, theirs = CaseFactory(team=team), CaseFactory(team=other_team)

    # when
    response = run_action(as_admin, "assign_selected", [ours, theirs], assignee=agent.pk)

    # then
    assert fresh(ours).assignee == agent
    assert fresh(theirs).assignee is None
    assert ("error", f"{theirs.number}: {agent} is not a member of team Billing.") in messages_of(
        response
    )


def test_bulk_status_changes_the_others_when_one_case_cannot_make_the_transition(as_admin, team):
    # given
    new, resolved, working = (CaseFactory(team=team) for _ in range(3))
    services.case_change_status(actor=None, case=resolved, status="resolved")
    services.case_change_status(actor=None, case=working, status="in_progress")

    # when
    response = run_action(
        as_admin, "change_status_selected", [new, resolved, working], status="awaiting_customer"
    )

    # then
    assert [fresh(c).status for c in (new, resolved, working)] == [
        "awaiting_customer",
        "resolved",
        "awaiting_customer",
    ]
    assert messages_of(response) == [
        ("error", f"{resolved.number}: A resolved case cannot become awaiting customer."),
        ("success", f"{new.number}, {working.number}: status set to awaiting customer."),
    ]


def test_bulk_actions_without_a_choice_change_nothing_and_say_why(as_admin, team):
    # given
    case = CaseFactory(team=team)

    # when
    assign = run_action(as_admin, "assign_selected", [case])
    status = run_action(as_admin, "change_status_selected", [case])

    # then
    assert messages_of(assign) == [("error", "Choose an agent or a team to assign the cases to.")]
    assert messages_of(status) == [("error", "Choose the status to set.")]
    assert fresh(case).status == "new"


def test_bulk_merge_moves_the_selected_cases_into_the_target(as_admin, team):
    # given
    first, second, target = (CaseFactory(team=team) for _ in range(3))
    TaskFactory(case=first, subject="Call back")

    # when
    response = run_action(as_admin, "merge_selected", [first, second], target=target.number)

    # then
    assert fresh(first).merged_into == target
    assert fresh(second).merged_into == target
    assert list(target.tasks.values_list("subject", flat=True)) == ["Call back"]
    assert messages_of(response) == [
        ("success", f"Merged {first.number}, {second.number} into {target.number}.")
    ]


def test_merging_a_case_into_itself_is_refused_while_the_others_merge(as_admin, team):
    # given
    target, other = CaseFactory(team=team), CaseFactory(team=team)

    # when
    response = run_action(as_admin, "merge_selected", [target, other], target=target.number)

    # then
    assert fresh(target).merged_into is None
    assert fresh(other).merged_into == target
    assert ("error", f"{target.number}: A case cannot be merged into itself.") in messages_of(
        response
    )


def test_merging_into_a_merged_case_is_refused_with_the_services_message(as_admin, team):
    # given
    gone, survivor, source = (CaseFactory(team=team) for _ in range(3))
    services.case_merge(actor=None, source=gone, target=survivor)

    # when
    response = run_action(as_admin, "merge_selected", [source], target=gone.number)

    # then
    assert fresh(source).merged_into is None
    assert messages_of(response) == [
        (
            "error",
            f"{source.number}: {gone.number} was merged into another case; "
            "merge into that one instead.",
        )
    ]


def test_a_lead_cannot_merge_into_another_teams_case(client, two_teams):
    # given
    client.force_login(two_teams["lead"])
    case_a, case_b = two_teams["case_a"], two_teams["case_b"]

    # when
    response = run_action(client, "merge_selected", [case_a], target=case_b.number)

    # then
    assert messages_of(response) == [("error", f"There is no case {case_b.number}.")]
    assert fresh(case_a).merged_into is None


def test_export_csv_streams_the_selected_cases(as_admin, team):
    # given
    agent = make_agent(team=team, email="ann@support.example")
    customer = CustomerFactory(name="Ada Customer")
    picked = CaseFactory(team=team, title="=cmd|' /C calc'!A0", assignee=agent, customer=customer)
    CaseFactory(team=team, title="Not exported")

    # when
    response = run_action(as_admin, "export_csv", [picked])

    # then
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="cases.csv"'
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:10] == [
        "number",
        "title",
        "status",
        "priority",
        "type",
        "channel",
        "team",
        "assignee",
        "customer",
        "customer_email",
    ]
    assert rows[1][:9] == [
        picked.number,
        "'=cmd|' /C calc'!A0",
        "new",
        "normal",
        "question",
        "email",
        "Support",
        "ann@support.example",
        "Ada Customer",
    ]
    assert len(rows) == 2


# --- tasks and customers ------------------------------------------------------------------------


def test_a_task_status_change_in_admin_is_recorded_on_its_case(as_admin, team):
    # given
    case = CaseFactory(team=team)
    task = TaskFactory(case=case, subject="Order toner")
    url = f"/admin/cases/task/{task.pk}/change/"
    page = as_admin.get(url)

    # when
    response = as_admin.post(url, posted_back(page, status="in_progress"))

    # then
    assert response.status_code == 302
    assert Task.objects.get(pk=task.pk).status == "in_progress"
    assert case.timeline.filter(summary="Task “Order toner”: New → In progress").exists()


def test_an_invalid_task_transition_is_shown_on_the_status_field(as_admin, team):
    # given
    task = TaskFactory(case=CaseFactory(team=team))
    services.task_change_status(actor=None, task=task, status="in_progress")
    url = f"/admin/cases/task/{task.pk}/change/"
    page = as_admin.get(url)

    # when
    response = as_admin.post(url, posted_back(page, status="new"))

    # then
    assert form_errors(response)["status"] == ["An in progress task cannot become new."]
    assert Task.objects.get(pk=task.pk).status == "in_progress"


def test_a_customer_added_in_admin_gets_a_change_number_and_its_addresses(as_admin):
    # given
    page = as_admin.get("/admin/cases/customer/add/")
    data = posted_back(page, name="Grace Hopper")
    data |= {"emails-TOTAL_FORMS": "1", "emails-0-email": "Grace@Navy.example"}
    data |= {"phones-TOTAL_FORMS": "1", "phones-0-number": "+1 555 0100", "phones-0-kind": "work"}

    # when
    response = as_admin.post("/admin/cases/customer/add/", data)

    # then
    assert response.status_code == 302
    customer = Customer.objects.get(name="Grace Hopper")
    assert customer.change_seq is not None
    assert list(customer.emails.values_list("email", "is_primary")) == [
        ("grace@navy.example", True)
    ]
    assert list(customer.phones.values_list("number", flat=True)) == ["+1 555 0100"]


def test_an_address_of_another_customer_is_refused_on_the_email_row(as_admin):
    # given
    CustomerFactory(name="First", emails=["shared@mail.example"])
    customer = CustomerFactory(name="Second", emails=["second@mail.example"])
    url = f"/admin/cases/customer/{customer.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page) | {"emails-TOTAL_FORMS": "1", "emails-0-email": "Shared@mail.example"}

    # when
    response = as_admin.post(url, data)

    # then
    assert response.status_code == 200
    emails = next(
        i.formset for i in response.context["inline_admin_formsets"] if i.formset.prefix == "emails"
    )
    assert emails.errors[0]["email"] == ["shared@mail.example already belongs to First."]


def test_adding_an_address_in_admin_gives_the_customer_a_new_change_number(as_admin):
    # given
    customer = CustomerFactory(name="Linus", emails=["linus@mail.example"])
    url = f"/admin/cases/customer/{customer.pk}/change/"
    page = as_admin.get(url)
    data = posted_back(page) | {"emails-TOTAL_FORMS": "1", "emails-0-email": "l@other.example"}

    # when
    response = as_admin.post(url, data)

    # then
    assert response.status_code == 302
    updated = Customer.objects.get(pk=customer.pk)
    assert updated.change_seq > customer.change_seq
    assert set(updated.emails.values_list("email", flat=True)) == {
        "linus@mail.example",
        "l@other.example",
    }


# --- every page renders, and no changelist grows its queries with its rows ----------------------

ADMIN_PAGES = [
    "/admin/",
    "/admin/cases/case/",
    "/admin/cases/case/add/",
    "/admin/cases/case/{case}/change/",
    "/admin/cases/task/",
    "/admin/cases/task/add/",
    "/admin/cases/task/{task}/change/",
    "/admin/cases/customer/",
    "/admin/cases/customer/add/",
    "/admin/cases/customer/{customer}/change/",
    "/admin/cases/organization/",
    "/admin/cases/organization/add/",
    "/admin/cases/organization/{organization}/change/",
    "/admin/cases/tag/",
    "/admin/cases/tag/add/",
    "/admin/cases/caselink/",
    "/admin/cases/caselink/add/",
    "/admin/cases/casenote/",
    "/admin/cases/timelineevent/",
    "/admin/crm/team/",
    "/admin/crm/team/{team}/change/",
    "/admin/crm/teammembership/",
    "/admin/crm/teammembership/add/",
    "/admin/crm/agentprofile/",
    "/admin/crm/user/",
    "/admin/crm/user/{member}/change/",
]
ADMIN_ONLY_PAGES = {"/admin/crm/user/add/", "/admin/crm/team/add/", "/admin/crm/apitoken/"}


@pytest.mark.parametrize("role", ["admin", "lead"])
@pytest.mark.parametrize("url", ADMIN_PAGES + sorted(ADMIN_ONLY_PAGES))
def test_every_admin_page_renders_for_admins_and_for_leads_where_they_may_go(
    client, team, role, url
):
    # given
    member = make_agent(team=team)
    client.force_login(make_agent(team=team, role=role))
    case = CaseFactory(team=team, assignee=member, customer=CustomerFactory())
    ids = {
        "case": case.pk,
        "task": TaskFactory(case=case, assignee=member).pk,
        "customer": case.customer.pk,
        "organization": OrganizationFactory(domains=["render.example"]).pk,
        "team": team.pk,
        "member": member.pk,
    }

    # when
    response = client.get(url.format(**ids))

    # then
    expected = 403 if role == "lead" and url in ADMIN_ONLY_PAGES else 200
    assert response.status_code == expected


DOMAIN_NUMBERS = itertools.count()


def add_cases(count: int, team, actor) -> None:
    for _ in range(count):
        CaseFactory(
            team=team, actor=actor, assignee=make_agent(team=team), customer=CustomerFactory()
        )


def add_tasks(count: int, team, actor) -> None:
    case = CaseFactory(team=team)
    for _ in range(count):
        TaskFactory(case=case, assignee=make_agent(team=team))


def add_customers(count: int, team, actor) -> None:
    for _ in range(count):
        customer = CustomerFactory(organization=OrganizationFactory())
        CaseFactory(team=team, customer=customer)


def add_organizations(count: int, team, actor) -> None:
    for _ in range(count):
        organization = OrganizationFactory(domains=[f"org{next(DOMAIN_NUMBERS)}.example"])
        CustomerFactory(organization=organization)


def add_teams(count: int, team, actor) -> None:
    for _ in range(count):
        make_agent(team=TeamFactory(), role="lead")


def add_users(count: int, team, actor) -> None:
    for _ in range(count):
        make_agent(team=team)


CHANGELISTS = [
    pytest.param(CASES, add_cases, id="cases"),
    pytest.param("/admin/cases/task/", add_tasks, id="tasks"),
    pytest.param("/admin/cases/customer/", add_customers, id="customers"),
    pytest.param("/admin/cases/organization/", add_organizations, id="organizations"),
    pytest.param("/admin/crm/team/", add_teams, id="teams"),
    pytest.param("/admin/crm/user/", add_users, id="users"),
    pytest.param("/admin/cases/timelineevent/", add_cases, id="timeline events"),
]


def queries_to_render(client, url: str) -> tuple[int, int]:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries), response.context["cl"].result_count


@pytest.mark.parametrize(("url", "add_rows"), CHANGELISTS)
def test_a_changelist_needs_as_many_queries_for_20_rows_as_for_2(
    as_admin, admin_agent, team, url, add_rows
):
    # given
    add_rows(2, team, admin_agent)
    as_admin.get(url)  # warm caches that are filled once per process

    # when
    with_few, rows_few = queries_to_render(as_admin, url)
    add_rows(18, team, admin_agent)
    with_many, rows_many = queries_to_render(as_admin, url)

    # then
    assert rows_many >= rows_few + 18
    assert with_many == with_few


def test_a_leads_case_list_needs_as_many_queries_for_20_rows_as_for_2(client, team):
    # given
    lead = make_agent(team=team, role="lead")
    client.force_login(lead)
    add_cases(2, team, lead)
    client.get(CASES)

    # when
    with_few, rows_few = queries_to_render(client, CASES)
    add_cases(18, team, lead)
    with_many, rows_many = queries_to_render(client, CASES)

    # then
    assert (rows_few, rows_many) == (2, 20)
    assert with_many == with_few
