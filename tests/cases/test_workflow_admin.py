"""Workflow rules in the back office and the dry run: an admin builds a rule in Django admin
(the rule with its condition and action rows, posted as the browser posts them), sees what is
wrong with a rule that would not run, watches the rule list and the execution log, and asks
"what would the rules do to this case?" in the admin and through the API, which must change
nothing and send nothing.

Rules run after the change commits, so changes that should fire them happen inside `commit()`
(`django_capture_on_commit_callbacks(execute=True)`); dry runs are posted inside it too, so
anything they wrongly left queued for after commit would run and show."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django.utils.html import escape
from rest_framework.test import APIClient

from cases import services
from cases.choices import RuleTrigger
from cases.models import (
    Case,
    TaskTemplate,
    TimelineEvent,
    WebhookDelivery,
    WebhookEndpoint,
    WorkflowEvent,
    WorkflowRule,
    WorkflowRun,
)
from cases.workflow.compiled import active_rules, rules_changed
from crm.models import Team
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent, make_rule

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

RULES = "/admin/cases/workflowrule/"
RUNS = "/admin/cases/workflowrun/"
TASK_TEMPLATES = "/admin/cases/tasktemplate/"
DRY_RUN_API = "/api/v1/workflows/dry-run"
_ids = itertools.count(1)


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run what a commit would run (rules, then the rules' own after-commit work)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def boss():
    return make_agent(role="admin", first_name="Grace", last_name="Hopper")


@pytest.fixture
def admin_web(boss) -> Client:
    client = Client()
    client.force_login(boss)
    return client


@pytest.fixture
def admin_api(boss) -> APIClient:
    client = APIClient()
    client.force_authenticate(boss)
    return client


def api_as(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def management(prefix: str, total: int) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


ACTION_COLUMNS = ("value", "team", "agent", "recipients", "task_template", "canned_response",
                  "webhook", "subject", "body")  # fmt: skip


def rule_data(
    *,
    name: str = "Printer trouble",
    trigger: str = RuleTrigger.CASE_CREATED,
    conditions: list[tuple[str, str, str] | tuple[str, str, str, str]] = (),
    actions: list[dict] = ({"kind": "add_tag", "value": "printer"},),
    **fields,
) -> dict:
    """The add form of a rule as the browser posts it: the rule's fields and both inlines.
    A condition is (field, operator, value[, group]); an action is RuleAction's columns, with
    objects for the foreign keys."""
    data = {"name": name, "description": "", "active": "on", "trigger": trigger, "order": "100",
            "time_anchor": "", "time_hours": "", "calendar": ""}  # fmt: skip
    data |= {key: str(value) for key, value in fields.items()}
    data |= management("conditions", len(conditions))
    for i, (field, operator, value, *group) in enumerate(conditions):
        data |= {f"conditions-{i}-group": group[0] if group else "all",
                 f"conditions-{i}-field": field, f"conditions-{i}-operator": operator,
                 f"conditions-{i}-value": value, f"conditions-{i}-position": str(i)}  # fmt: skip
    data |= management("actions", len(actions))
    for i, action in enumerate(actions):
        data |= {f"actions-{i}-position": str(i), f"actions-{i}-kind": action["kind"]}
        for column in ACTION_COLUMNS:
            value = action.get(column, "")
            data[f"actions-{i}-{column}"] = str(getattr(value, "pk", value))
    return data


def errors_of(response) -> list[str]:
    """Every error message the admin form page shows: fields, form and inline formsets."""
    assert response.status_code == 200, response.status_code
    messages = []
    form = response.context["adminform"].form
    for field_errors in form.errors.values():
        messages += list(field_errors)
    for inline in response.context["inline_admin_formsets"]:
        messages += list(inline.formset.non_form_errors())
        for form_errors in inline.formset.errors:
            for field_errors in form_errors.values():
                messages += list(field_errors)
    return messages


def tags(case) -> set[str]:
    return set(case.tags.values_list("name", flat=True))


def snapshot(case: Case) -> dict:
    """Everything about a case a dry run could wrongly leave behind."""
    case.refresh_from_db()
    return {
        "fields": (case.status, case.priority, case.type, case.team_id, case.assignee_id),
        "tags": tags(case),
        "notes": case.notes.count(),
        "tasks": case.tasks.count(),
        "timeline": TimelineEvent.objects.filter(case=case).count(),
        "runs": WorkflowRun.objects.filter(case=case).count(),
        "events": WorkflowEvent.objects.filter(case=case).count(),
        "deliveries": WebhookDelivery.objects.count(),
    }


@pytest.fixture
def hook():
    """A webhook nothing listens on: a dry run must never get as far as posting to it."""
    return WebhookEndpoint.objects.create(name="Billing system", url="http://127.0.0.1:9/hook")


@pytest.fixture
def printer_rule(team, hook):
    """A "case updated" rule with every kind of effect a dry run must not leave behind: fields,
    tags, notes, tasks, emails and a webhook."""
    template = TaskTemplate.objects.create(name="Call back", subject="Call about {{ case.number }}")
    return make_rule(
        "Printer fires",
        trigger=RuleTrigger.CASE_UPDATED,
        conditions=[("case.title", "contains", "printer")],
        actions=[
            {"kind": "set_priority", "value": "urgent"},
            {"kind": "add_tag", "value": "hardware"},
            {"kind": "add_note", "body": "Printer case {{ case.number }}."},
            {"kind": "create_task", "task_template": template},
            {"kind": "email_agents", "recipients": "team", "subject": "{{ case.number }}",
             "body": "Look at {{ case.title }}."},
            {"kind": "webhook", "webhook": hook},
        ],
    )  # fmt: skip


# --- creating a rule in admin -------------------------------------------------------------------


def test_the_add_form_explains_the_fields_and_comparisons(admin_web):
    response = admin_web.get(f"{RULES}add/")

    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="condition-help"' in page
    assert "<code>case.status</code>" in page
    assert "matches the regular expression" in page


def test_an_admin_creates_a_rule_with_conditions_and_actions_and_it_runs(
    admin_web, boss, team, commit
):
    assert active_rules().by_trigger == {}  # this process holds the rules as they were
    data = rule_data(
        name="Urgent printers",
        conditions=[("case.title", "contains", "Printer"), ("case.team", "is", "billing")],
        actions=[{"kind": "set_priority", "value": "urgent"},
                 {"kind": "add_tag", "value": "Hardware Fault"}],
    )  # fmt: skip

    with commit():
        response = admin_web.post(f"{RULES}add/", data)

    assert response.status_code == 302, errors_of(response)
    rule = WorkflowRule.objects.get(name="Urgent printers")
    assert (rule.trigger, rule.active, rule.created_by) == ("case_created", True, boss)
    assert [(c.field, c.operator, c.value) for c in rule.conditions.all()] == [
        ("case.title", "contains", "Printer"),
        ("case.team", "is", "billing"),
    ]
    # The tag is stored as cases store tags.
    assert [(a.kind, a.value) for a in rule.actions.all()] == [
        ("set_priority", "urgent"),
        ("add_tag", "hardware-fault"),
    ]

    with commit():
        printer = CaseFactory(team=team, title="Printer on fire")
    with commit():
        other = CaseFactory(team=TeamFactory(name="Sales"), title="Printer on fire")
    printer.refresh_from_db()
    assert printer.priority == "urgent"
    assert tags(printer) == {"hardware-fault"}
    assert [run.rule_name for run in WorkflowRun.objects.filter(case=printer)] == [
        "Urgent printers"
    ]
    assert not WorkflowRun.objects.filter(case=other).exists()


def test_an_admin_deactivating_a_rule_stops_it(admin_web, team, commit):
    rule = make_rule("Tag all", trigger=RuleTrigger.CASE_CREATED,
                     actions=[{"kind": "add_tag", "value": "seen"}])  # fmt: skip
    assert active_rules().wants(RuleTrigger.CASE_CREATED)
    action = rule.actions.get()
    data = rule_data(name="Tag all", actions=[]) | {
        "actions-TOTAL_FORMS": "1",
        "actions-INITIAL_FORMS": "1",
        "actions-0-id": str(action.pk),
        "actions-0-rule": str(rule.pk),
        "actions-0-position": "0",
        "actions-0-kind": "add_tag",
        "actions-0-value": "seen",
    }
    del data["active"]  # the box unticked

    with commit():
        response = admin_web.post(f"{RULES}{rule.pk}/change/", data)

    assert response.status_code == 302, errors_of(response)
    with commit():
        case = CaseFactory(team=team)
    assert tags(case) == set()
    assert not WorkflowRun.objects.exists()


# --- rules that would not run are refused ------------------------------------------------------


def _unknown_team(**_):
    return rule_data(conditions=[("case.team", "is", "Nowhere")]), "There is no team “Nowhere”."


def _operator_the_field_does_not_take(**_):
    return (
        rule_data(conditions=[("case.status", "contains", "new")]),
        "Case status takes these comparisons: is, is not, is one of",
    )


def _invalid_regex(**_):
    return (
        rule_data(conditions=[("case.title", "matches", "printer (on")]),
        "Not a valid regular expression",
    )


def _changed_to_on_creation(**_):
    return (
        rule_data(conditions=[("case.status", "changed_to", "resolved")]),
        "“changed”, “changed from” and “changed to” need a trigger that changes the case",
    )


def _message_field_without_message(**_):
    return (
        rule_data(
            trigger=RuleTrigger.STATUS_CHANGED, conditions=[("message.subject", "contains", "x")]
        ),
        "Message fields need a message trigger",
    )


def _sla_field_without_sla_trigger(**_):
    return (
        rule_data(conditions=[("sla.metric", "is", "first_response")]),
        "The SLA target field needs an SLA trigger.",
    )


def _message_to_task_without_message(**_):
    return (
        rule_data(actions=[{"kind": "message_to_task"}]),
        "“Turn the message into a task” needs a message trigger.",
    )


def _set_status_without_value(**_):
    return rule_data(actions=[{"kind": "set_status"}]), "Choose one of: new, "


def _set_team_without_team(**_):
    return rule_data(actions=[{"kind": "set_team"}]), "Choose the team."


def _column_the_action_does_not_use(team, **_):
    return (
        rule_data(actions=[{"kind": "add_tag", "value": "vip", "team": team}]),
        "This action does not use this field.",
    )


def _chosen_agent_missing(**_):
    return (
        rule_data(actions=[{"kind": "email_agents", "recipients": "agent", "subject": "Hi",
                            "body": "Look"}]),
        "Choose the agent exactly when the recipients are “the chosen agent”.",
    )  # fmt: skip


def _note_that_does_not_parse(**_):
    return (
        rule_data(actions=[{"kind": "add_note", "body": "{% if case.number %}unclosed"}]),
        "This template does not parse",
    )


def _no_actions(**_):
    return rule_data(actions=[]), "A rule needs at least one action."


def _time_rule_without_anchor(**_):
    return rule_data(trigger=RuleTrigger.TIME), "A time-based rule needs what it measures from."


def _time_rule_without_hours(**_):
    return (
        rule_data(trigger=RuleTrigger.TIME, time_anchor="created", time_hours="0"),
        "A time-based rule needs its hours (more than 0).",
    )


def _time_fields_on_an_event_rule(**_):
    return (
        rule_data(time_anchor="created", time_hours="24"),
        "Only time-based rules use this.",
    )


@pytest.mark.parametrize(
    "case",
    [
        _unknown_team,
        _operator_the_field_does_not_take,
        _invalid_regex,
        _changed_to_on_creation,
        _message_field_without_message,
        _sla_field_without_sla_trigger,
        _message_to_task_without_message,
        _set_status_without_value,
        _set_team_without_team,
        _column_the_action_does_not_use,
        _chosen_agent_missing,
        _note_that_does_not_parse,
        _no_actions,
        _time_rule_without_anchor,
        _time_rule_without_hours,
        _time_fields_on_an_event_rule,
    ],
    ids=lambda case: case.__name__.strip("_"),
)
def test_a_rule_that_would_not_run_is_refused_with_the_reason(admin_web, team, case):
    make_rule("Existing", trigger=RuleTrigger.CASE_CREATED,
              actions=[{"kind": "add_tag", "value": "x"}])  # fmt: skip
    data, message = case(team=team)

    response = admin_web.post(f"{RULES}add/", data)

    errors = errors_of(response)
    assert any(message in error for error in errors), errors
    assert escape(message) in response.content.decode()
    assert WorkflowRule.objects.count() == 1


# --- the rule list ------------------------------------------------------------------------------


def test_the_rule_list_says_which_rules_run_and_why_one_does_not(admin_web, team):
    make_rule("Billing first", trigger=RuleTrigger.CASE_CREATED,
              conditions=[("case.team", "is", "Billing")],
              actions=[{"kind": "set_priority", "value": "high"}])  # fmt: skip
    make_rule("Tag everything", trigger=RuleTrigger.CASE_CREATED,
              actions=[{"kind": "add_tag", "value": "seen"}])  # fmt: skip
    make_rule("Switched off", trigger=RuleTrigger.CASE_CREATED, active=False,
              actions=[{"kind": "add_tag", "value": "off"}])  # fmt: skip
    assert active_rules().broken == {}

    Team.objects.filter(pk=team.pk).update(name="Accounts")  # behind the rules' back
    rules_changed()
    response = admin_web.get(RULES)

    assert response.status_code == 200
    states = {
        rule.name: response.context["cl"].model_admin.state(rule)
        for rule in response.context["cl"].result_list
    }
    assert states == {
        "Billing first": "not running: Condition “case.team is Billing”: "
        "There is no team “Billing”.",
        "Tag everything": "running",
        "Switched off": "inactive",
    }
    page = response.content.decode()
    assert escape(states["Billing first"]) in page
    assert reverse("admin:cases_workflowrule_dry_run") in page


# --- the dry run in admin -----------------------------------------------------------------------


def test_the_admin_dry_run_shows_what_would_fire_and_changes_nothing(
    admin_web, team, agent, printer_rule, commit
):
    case = CaseFactory(team=team, title="Printer jammed", customer=CustomerFactory())
    before = snapshot(case)

    with commit():
        response = admin_web.post(
            reverse("admin:cases_workflowrule_dry_run"),
            {"case": case.number.lower(), "trigger": "case_updated"},
        )

    assert response.status_code == 200
    result = response.context["result"]
    [fired] = result.fired
    assert fired.rule_name == "Printer fires"
    assert fired.errors == 0
    assert [a["summary"] for a in fired.actions][:5] == [
        "priority → Urgent",
        "tag +hardware",
        "internal note added",
        f"task “Call about {case.number}” created",
        "emailed 1 agent",
    ]
    assert fired.actions[5]["summary"].startswith("webhook “Billing system” queued")
    assert result.changes == {
        "priority": ["Normal", "Urgent"],
        "tags": ["", "hardware"],
        "tasks": [0, 1],
        "notes": [0, 1],
    }
    page = response.content.decode()
    assert f"{case.number}: 1 rule would fire" in page
    assert "Printer fires" in page
    assert "priority → Urgent" in page
    assert '<table id="dry-run-changes">' in page
    assert "<tr><td>priority</td><td>Normal</td><td>Urgent</td></tr>" in page

    assert snapshot(case) == before
    assert mail.outbox == []


def test_the_admin_dry_run_says_when_no_rule_would_fire(admin_web, team, printer_rule):
    case = CaseFactory(team=team, title="Password reset")

    response = admin_web.post(
        reverse("admin:cases_workflowrule_dry_run"),
        {"case": case.number, "trigger": "case_updated"},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert f"{case.number}: 0 rules would fire" in page
    assert "No rule would fire." in page
    assert "No field of the case would change." in page


def test_the_admin_dry_run_of_an_unknown_case_is_a_form_error(admin_web, printer_rule):
    response = admin_web.post(
        reverse("admin:cases_workflowrule_dry_run"),
        {"case": "case-999999", "trigger": "case_updated"},
    )

    assert response.status_code == 200
    assert response.context["form"].errors == {"case": ["There is no case CASE-999999."]}
    assert response.context["result"] is None
    assert "There is no case CASE-999999." in response.content.decode()


def test_the_admin_dry_run_of_a_message_trigger_looks_at_the_cases_latest_message(
    admin_web, mailbox, team
):
    first = deliver(mailbox, subject="Printer broken")
    case = services.message_intake(message_id=first.pk).case
    later = deliver(mailbox, subject=f"Re: Printer broken [{case.number}] invoice attached",
                    in_reply_to=first.internet_message_id)  # fmt: skip
    assert services.message_intake(message_id=later.pk).case == case
    silent = CaseFactory(team=team)
    make_rule("Invoices", trigger=RuleTrigger.CUSTOMER_MESSAGE,
              conditions=[("message.subject", "contains", "invoice")],
              actions=[{"kind": "add_tag", "value": "billing"}])  # fmt: skip
    url = reverse("admin:cases_workflowrule_dry_run")

    response = admin_web.post(url, {"case": case.number, "trigger": "customer_message"})
    no_message = admin_web.post(url, {"case": silent.number, "trigger": "customer_message"})

    assert response.status_code == 200
    assert [fired.rule_name for fired in response.context["result"].fired] == ["Invoices"]
    assert response.context["result"].changes == {"tags": ["", "billing"]}
    assert tags(case) == set()
    assert no_message.context["form"].errors == {"__all__": ["This case has no message."]}


def test_a_lead_allowed_the_rules_dry_runs_only_cases_of_the_teams_they_lead(
    client, team, printer_rule
):
    """Leads do not see the rules by default; an admin may let them. They then dry-run what
    the API lets them dry-run: the cases of the teams they lead, and no other."""
    from django.contrib.auth.models import Permission

    lead = make_agent(team=team, role="lead")
    lead.user_permissions.add(Permission.objects.get(codename="view_workflowrule"))
    ours = CaseFactory(team=team, title="Printer jammed")
    theirs = CaseFactory(team=TeamFactory(name="Sales"), title="Printer jammed")
    client.force_login(lead)
    url = reverse("admin:cases_workflowrule_dry_run")

    own = client.post(url, {"case": ours.number, "trigger": "case_updated"})
    other = client.post(url, {"case": theirs.number, "trigger": "case_updated"})

    assert [fired.rule_name for fired in own.context["result"].fired] == ["Printer fires"]
    assert other.context["result"] is None
    assert other.context["form"].errors == {"case": [f"There is no case {theirs.number}."]}


def test_a_plain_agent_cannot_open_the_admin_dry_run(client, agent):
    client.force_login(agent)

    response = client.get(reverse("admin:cases_workflowrule_dry_run"))

    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


# --- the execution log --------------------------------------------------------------------------


@pytest.fixture
def fired_runs(team, commit):
    """Two firings: one clean, one whose round-robin found nobody (a failed action)."""
    nobody = TeamFactory(name="Nobody here")
    make_rule("Tag new cases", trigger=RuleTrigger.CASE_CREATED, order=10,
              actions=[{"kind": "add_tag", "value": "new"}])  # fmt: skip
    make_rule("Assign new cases", trigger=RuleTrigger.CASE_CREATED, order=20,
              conditions=[("case.team", "is", "Nobody here")],
              actions=[{"kind": "round_robin"},
                       {"kind": "set_priority", "value": "high"}])  # fmt: skip
    with commit():
        fine = CaseFactory(team=team)
    with commit():
        failing = CaseFactory(team=nobody)
    return fine, failing


def test_the_execution_log_lists_runs_and_filters_the_failed_ones(admin_web, fired_runs):
    fine, failing = fired_runs

    everything = admin_web.get(RUNS)
    failed = admin_web.get(RUNS, {"failed": "yes"})
    done = admin_web.get(RUNS, {"failed": "no"})

    assert everything.status_code == failed.status_code == done.status_code == 200

    def listed(response) -> list[tuple[str, str]]:
        return sorted((run.rule_name, run.case.number) for run in
                      response.context["cl"].result_list)  # fmt: skip

    assert listed(everything) == sorted([("Tag new cases", fine.number),
                                         ("Tag new cases", failing.number),
                                         ("Assign new cases", failing.number)])  # fmt: skip
    assert listed(failed) == [("Assign new cases", failing.number)]
    assert listed(done) == sorted([("Tag new cases", fine.number),
                                   ("Tag new cases", failing.number)])  # fmt: skip
    page = failed.content.decode()
    assert "Assign round-robin in the team FAILED: " in page
    assert "priority → High" in page


def test_an_execution_log_entry_shows_each_actions_outcome(admin_web, fired_runs):
    _, failing = fired_runs
    run = WorkflowRun.objects.get(case=failing, rule_name="Assign new cases")

    response = admin_web.get(f"{RUNS}{run.pk}/change/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "<ol><li>Assign round-robin in the team — failed: " in page
    assert "<li>priority → High</li></ol>" in page
    assert failing.number in page
    assert admin_web.get(f"{RUNS}add/").status_code == 403


# --- task templates -----------------------------------------------------------------------------


def test_a_task_template_that_does_not_parse_is_refused(admin_web):
    data = {"name": "Call back", "active": "on", "subject": "Call {{ customer.name|shout }}",
            "description": "{% if case.number %}unclosed", "priority": "normal",
            "due_in_hours": "24", "assign_to_case_assignee": "on", "checklist": ""}  # fmt: skip

    response = admin_web.post(f"{TASK_TEMPLATES}add/", data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert set(errors) == {"subject", "description"}
    assert all("This template does not parse" in e[0] for e in errors.values()), errors
    assert not TaskTemplate.objects.exists()

    good = data | {"subject": "Call {{ customer.name }}", "description": "About {{ case.number }}"}
    assert admin_web.post(f"{TASK_TEMPLATES}add/", good).status_code == 302
    assert TaskTemplate.objects.get().subject == "Call {{ customer.name }}"


# --- the dry run through the API ------------------------------------------------------------------


def test_an_admin_dry_runs_a_case_through_the_api_and_nothing_changes(
    admin_api, team, agent, printer_rule, commit
):
    case = CaseFactory(team=team, title="Printer jammed", customer=CustomerFactory())
    before = snapshot(case)

    with commit():
        response = admin_api.post(
            DRY_RUN_API, {"case": case.number, "trigger": "case_updated"}, format="json"
        )

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["case"], body["trigger"], body["rounds"]) == (case.number, "case_updated", 2)
    [fired] = body["fired"]
    assert fired["rule"] == {"id": printer_rule.pk, "name": "Printer fires"}
    assert fired["trigger"] == "case_updated"
    assert [a["kind"] for a in fired["actions"]] == [
        "set_priority", "add_tag", "add_note", "create_task", "email_agents", "webhook",
    ]  # fmt: skip
    assert all(a["ok"] and a["error"] == "" for a in fired["actions"])
    assert body["changes"] == {
        "priority": {"before": "Normal", "after": "Urgent"},
        "tags": {"before": "", "after": "hardware"},
        "tasks": {"before": 0, "after": 1},
        "notes": {"before": 0, "after": 1},
    }
    assert snapshot(case) == before
    assert mail.outbox == []

    by_id = admin_api.post(DRY_RUN_API, {"case": str(case.pk)}, format="json")
    assert by_id.status_code == 200
    assert by_id.json()["trigger"] == "case_updated"


def test_a_lead_dry_runs_their_teams_cases_and_other_agents_may_not(team, printer_rule):
    case = CaseFactory(team=team, title="Printer jammed")
    lead = make_agent(team=team, role="lead")
    member = make_agent(team=team)
    other_lead = make_agent(team=TeamFactory(name="Sales"), role="lead")
    request = {"case": case.number, "trigger": "case_updated"}

    as_lead = api_as(lead).post(DRY_RUN_API, request, format="json")
    as_member = api_as(member).post(DRY_RUN_API, request, format="json")
    as_other_lead = api_as(other_lead).post(DRY_RUN_API, request, format="json")
    anonymous = APIClient().post(DRY_RUN_API, request, format="json")

    assert as_lead.status_code == 200, as_lead.content
    assert [f["rule"]["name"] for f in as_lead.json()["fired"]] == ["Printer fires"]
    assert as_member.status_code == 403
    assert "leads of the case's team" in as_member.json()["detail"]
    assert as_other_lead.status_code == 404  # a case they may not see
    assert anonymous.status_code == 401
    assert not WorkflowRun.objects.exists()


def test_the_api_dry_run_answers_bad_input_with_400_and_unknown_cases_with_404(admin_api, team):
    case = CaseFactory(team=team)

    bad_trigger = admin_api.post(DRY_RUN_API, {"case": case.number, "trigger": "whenever"},
                                 format="json")  # fmt: skip
    no_case = admin_api.post(DRY_RUN_API, {"trigger": "case_updated"}, format="json")
    unknown = admin_api.post(DRY_RUN_API, {"case": "CASE-999999"}, format="json")
    message_on_update = admin_api.post(
        DRY_RUN_API, {"case": case.number, "trigger": "case_updated", "message": 1}, format="json"
    )
    no_message = admin_api.post(
        DRY_RUN_API, {"case": case.number, "trigger": "customer_message"}, format="json"
    )

    assert bad_trigger.status_code == 400
    assert "trigger" in bad_trigger.json()
    assert no_case.status_code == 400
    assert "case" in no_case.json()
    assert unknown.status_code == 404
    assert message_on_update.status_code == 400
    assert message_on_update.json() == {"message": ["Only message triggers take one."]}
    assert no_message.status_code == 400
    assert no_message.json() == {"message": ["This case has no message."]}


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address="support@crm.example", team=team, local=True)


def deliver(mailbox, *, subject: str, in_reply_to: str = "") -> Message:
    n = next(_ids)
    return Message.objects.create(
        mailbox=mailbox, folder=mailbox.folders.get(well_known="inbox"), subject=subject,
        from_address="anna@nordwind.example", from_name="Anna Berg", body_text="Hello.",
        to=[{"name": "", "address": mailbox.address}],
        internet_message_id=f"<wfadmin{n}@nordwind.example>", in_reply_to=in_reply_to,
        received_at=timezone.now(),
    )  # fmt: skip


def test_a_message_dry_run_uses_the_latest_message_or_the_one_given(admin_api, mailbox, team):
    first = deliver(mailbox, subject="Printer broken")
    case = services.message_intake(message_id=first.pk).case
    second = deliver(mailbox, subject=f"Re: Printer broken [{case.number}] invoice attached",
                     in_reply_to=first.internet_message_id)  # fmt: skip
    assert services.message_intake(message_id=second.pk).case == case
    stranger = deliver(mailbox, subject="Lunch? invoice")
    assert services.message_intake(message_id=stranger.pk).case != case
    make_rule("Invoices", trigger=RuleTrigger.CUSTOMER_MESSAGE,
              conditions=[("message.subject", "contains", "invoice")],
              actions=[{"kind": "add_tag", "value": "billing"}])  # fmt: skip
    before = snapshot(case)

    def dry_run(**extra):
        request = {"case": case.number, "trigger": "customer_message", **extra}
        return admin_api.post(DRY_RUN_API, request, format="json")

    latest, given_first, given_second, not_of_case = (
        dry_run(), dry_run(message=first.pk), dry_run(message=second.pk),
        dry_run(message=stranger.pk),
    )  # fmt: skip

    assert latest.status_code == 200, latest.content
    assert [f["rule"]["name"] for f in latest.json()["fired"]] == ["Invoices"]
    assert latest.json()["changes"] == {"tags": {"before": "", "after": "billing"}}
    assert given_first.status_code == 200
    assert given_first.json()["fired"] == []
    assert [f["rule"]["name"] for f in given_second.json()["fired"]] == ["Invoices"]
    assert not_of_case.status_code == 400
    assert not_of_case.json() == {"message": ["Not a message of this case."]}
    assert snapshot(case) == before


def test_a_time_dry_run_reports_the_time_based_rules_that_are_due(admin_api, team):
    make_rule("Stale after two hours", trigger=RuleTrigger.TIME, time_anchor="created",
              time_hours=2, actions=[{"kind": "add_tag", "value": "stale"}])  # fmt: skip
    make_rule("Stale after a week", trigger=RuleTrigger.TIME, time_anchor="created",
              time_hours=168, actions=[{"kind": "add_tag", "value": "ancient"}])  # fmt: skip
    old, fresh = CaseFactory(team=team), CaseFactory(team=team)
    Case.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(hours=3))
    before = snapshot(old)

    due = admin_api.post(DRY_RUN_API, {"case": old.number, "trigger": "time"}, format="json")
    not_yet = admin_api.post(DRY_RUN_API, {"case": fresh.number, "trigger": "time"}, format="json")

    assert due.status_code == 200, due.content
    assert [(f["rule"]["name"], f["trigger"]) for f in due.json()["fired"]] == [
        ("Stale after two hours", "time")
    ]
    assert due.json()["changes"] == {"tags": {"before": "", "after": "stale"}}
    assert not_yet.status_code == 200
    assert not_yet.json()["fired"] == []
    assert snapshot(old) == before
