"""Workflow rules, through the doors users use: the API changes a case, intake threads a
message, the worker's sweep runs time-based rules and overdue tasks, the SLA tick breaches.
Rules run after the change commits, so every change here is made inside
`django_capture_on_commit_callbacks(execute=True)` (what a real commit does)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from cases import services
from cases.choices import CaseStatus, RuleTrigger, TimelineKind
from cases.models import (
    BusinessCalendar,
    BusinessHours,
    Case,
    CaseStatusPeriod,
    Task,
    TaskTemplate,
    TimelineEvent,
    WorkflowEvent,
    WorkflowRun,
)
from cases.workflow.engine import (
    MAX_DEPTH,
    workflow_process_event,
    workflow_process_stale,
)
from cases.workflow.timed import workflow_run_timed
from crm.models import Notification
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
    make_rule,
)

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

# Monday 23 November 2026, 10:00 in Berlin (09:00 UTC).
MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
_ids = itertools.count(1)


@pytest.fixture
def commit(django_capture_on_commit_callbacks):
    """Run what a commit would run (rules, then the rules' own after-commit work)."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def runs(case) -> list[WorkflowRun]:
    return list(WorkflowRun.objects.filter(case=case).order_by("pk"))


def rule_entries(case) -> list[str]:
    return list(
        TimelineEvent.objects.filter(case=case, kind=TimelineKind.RULE_FIRED)
        .order_by("pk")
        .values_list("summary", flat=True)
    )


def tags(case) -> set[str]:
    return set(case.tags.values_list("name", flat=True))


# --- event triggers --------------------------------------------------------------------------


def test_a_rule_on_creation_sets_fields_tags_and_a_note_for_vip_customers(api, team, commit):
    make_rule(
        "VIP first",
        trigger=RuleTrigger.CASE_CREATED,
        conditions=[("customer.vip", "is", "yes")],
        actions=[
            {"kind": "set_priority", "value": "urgent"},
            {"kind": "add_tag", "value": "VIP"},
            {"kind": "add_note", "body": "VIP customer {{ customer.name }}: call back today."},
        ],
    )
    vip = CustomerFactory(name="Vera Important", is_vip=True)
    plain = CustomerFactory(name="Paul Plain")

    with commit():
        first = api.post(
            "/api/v1/cases",
            {"title": "Outage", "team": team.pk, "customer": vip.pk},
            format="json",
        )
    with commit():
        second = api.post(
            "/api/v1/cases",
            {"title": "Question", "team": team.pk, "customer": plain.pk},
            format="json",
        )

    vip_case = Case.objects.get(pk=first.json()["id"])
    assert vip_case.priority == "urgent"
    assert tags(vip_case) == {"vip"}
    assert vip_case.notes.get().body == "VIP customer Vera Important: call back today."
    [run] = runs(vip_case)
    assert run.rule_name == "VIP first"
    assert run.errors == 0
    assert [a["summary"] for a in run.actions] == [
        "priority → Urgent",
        "tag +vip",
        "internal note added",
    ]
    assert rule_entries(vip_case) == [
        "Rule “VIP first”: priority → Urgent; tag +vip; internal note added"
    ]
    plain_case = Case.objects.get(pk=second.json()["id"])
    assert plain_case.priority == "normal"
    assert runs(plain_case) == []


def test_changed_to_and_changed_from_fire_only_on_that_change(api, team, agent, commit):
    template = TaskTemplate.objects.create(
        name="Satisfaction call",
        subject="Call {{ customer.first_name }} about {{ case.number }}",
        due_in_hours=48,
        checklist="Ask about the fix\nOffer a discount",
    )
    make_rule(
        "Follow up resolved cases",
        trigger=RuleTrigger.STATUS_CHANGED,
        conditions=[("case.status", "changed_to", "resolved")],
        actions=[{"kind": "create_task", "task_template": template}],
    )
    make_rule(
        "Reopened",
        trigger=RuleTrigger.CASE_UPDATED,
        conditions=[("case.status", "changed_from", "resolved")],
        actions=[{"kind": "add_tag", "value": "reopened"}],
    )
    case = CaseFactory(team=team, assignee=agent, customer=CustomerFactory(name="Anna Berg"))

    with commit():
        api.patch(f"/api/v1/cases/{case.pk}/status", {"status": "in_progress"}, format="json")
    assert not Task.objects.filter(case=case).exists()
    assert tags(case) == set()

    with commit():
        response = api.patch(
            f"/api/v1/cases/{case.pk}/status", {"status": "resolved"}, format="json"
        )
    assert response.status_code == 200, response.content
    task = Task.objects.get(case=case)
    assert task.subject == f"Call Anna about {case.number}"
    assert task.assignee == agent
    assert [item.text for item in task.checklist.all()] == ["Ask about the fix", "Offer a discount"]
    assert task.due_at > timezone.now() + timedelta(hours=47)

    with commit():
        api.patch(f"/api/v1/cases/{case.pk}/status", {"status": "in_progress"}, format="json")
    assert tags(case) == {"reopened"}
    assert Task.objects.filter(case=case).count() == 1


def test_any_conditions_contains_and_regex(api, team, commit):
    make_rule(
        "Billing words",
        trigger=RuleTrigger.CASE_CREATED,
        conditions=[
            ("case.channel", "is", "web"),
            ("case.title", "contains", "INVOICE", "any"),
            ("case.description", "matches", r"\bVAT\s+\d+%", "any"),
        ],
        actions=[{"kind": "add_tag", "value": "billing"}],
    )
    made = []
    for title, description, channel in [
        ("Wrong invoice", "", "web"),
        ("Tax", "they charged VAT 21% again", "web"),
        ("Wrong invoice", "", "email"),  # the "all" part fails
        ("Hello", "no tax words", "web"),  # no "any" holds
    ]:
        with commit():
            response = api.post(
                "/api/v1/cases",
                {"title": title, "description": description, "team": team.pk, "channel": channel},
                format="json",
            )
        made.append(Case.objects.get(pk=response.json()["id"]))
    assert [tags(case) == {"billing"} for case in made] == [True, True, False, False]


def test_rules_run_in_order_and_stop_processing_ends_the_round(team, commit):
    make_rule("Second", trigger=RuleTrigger.CASE_CREATED, order=20,
              actions=[{"kind": "add_tag", "value": "second"}])  # fmt: skip
    make_rule("First", trigger=RuleTrigger.CASE_CREATED, order=10, stop_processing=True,
              conditions=[("case.priority", "is", "urgent")],
              actions=[{"kind": "add_tag", "value": "first"}])  # fmt: skip

    with commit():
        urgent = CaseFactory(team=team, priority="urgent")
    with commit():
        normal = CaseFactory(team=team)

    assert [run.rule_name for run in runs(urgent)] == ["First"]
    assert tags(urgent) == {"first"}
    assert [run.rule_name for run in runs(normal)] == ["Second"]


def test_a_rule_fires_once_per_chain_and_long_chains_are_cut(team, commit):
    """Rule 1 tags t1 on creation; rule k (k > 1) tags tk when it sees t(k-1): a chain of
    rounds, one per rule. Ping-pong rules fire once each and stop."""
    make_rule("r1", trigger=RuleTrigger.CASE_CREATED, actions=[{"kind": "add_tag", "value": "t1"}])
    for k in range(2, MAX_DEPTH + 3):
        # Later links run first, so each round of rules adds one tag.
        make_rule(f"r{k}", trigger=RuleTrigger.CASE_UPDATED, order=100 - k,
                  conditions=[("case.tags", "contains", f"t{k - 1}"),
                              ("case.tags", "not_contains", f"t{k}")],
                  actions=[{"kind": "add_tag", "value": f"t{k}"}])  # fmt: skip
    make_rule("ping", trigger=RuleTrigger.CASE_UPDATED, order=1,
              conditions=[("case.priority", "changed_to", "low")],
              actions=[{"kind": "set_priority", "value": "high"}])  # fmt: skip
    make_rule("pong", trigger=RuleTrigger.CASE_UPDATED, order=2,
              conditions=[("case.priority", "changed_to", "high")],
              actions=[{"kind": "set_priority", "value": "low"}])  # fmt: skip

    with commit():
        case = CaseFactory(team=team)

    assert tags(case) == {f"t{k}" for k in range(1, MAX_DEPTH + 1)}
    cut = WorkflowRun.objects.get(case=case, rule=None)
    assert cut.rule_name == "(loop stopped)"
    assert cut.errors == 1
    assert any("loop" in entry for entry in rule_entries(case))

    with commit():
        services.case_update(actor=None, case=case, priority="low")
    case.refresh_from_db()
    assert case.priority == "low"  # ping set high, pong set low, and neither fires again
    fired = [run.rule_name for run in runs(case)]
    assert fired.count("ping") == 1
    assert fired.count("pong") == 1


def test_a_failing_action_is_logged_undone_alone_and_the_change_stands(commit):
    make_rule(
        "Assign",
        trigger=RuleTrigger.CASE_CREATED,
        actions=[
            {"kind": "round_robin"},  # nobody in the team takes work
            {"kind": "set_status", "value": "closed"},
            {"kind": "set_status", "value": "new"},  # closed → new is no transition
            {"kind": "add_tag", "value": "triaged"},
        ],
    )
    with commit():
        case = CaseFactory(team=TeamFactory(name="Nobody here"))

    case.refresh_from_db()
    [run] = runs(case)
    assert run.errors == 2
    outcomes = [(a["kind"], a["ok"]) for a in run.actions]
    assert outcomes == [("round_robin", False), ("set_status", True), ("set_status", False),
                        ("add_tag", True)]  # fmt: skip
    assert "No agent" in run.actions[0]["error"]
    assert "cannot become new" in run.actions[2]["error"]
    assert case.status == CaseStatus.CLOSED
    assert tags(case) == {"triaged"}
    assert "failed" in rule_entries(case)[0]


def test_an_event_is_processed_once_and_the_sweep_runs_lost_ones(team, commit):
    make_rule("Tag", trigger=RuleTrigger.CASE_CREATED, actions=[{"kind": "add_tag", "value": "x"}])
    case = CaseFactory(team=team)  # committed without its after-commit run (a crash)
    event = WorkflowEvent.objects.get(case=case)
    assert event.processed_at is None
    assert runs(case) == []

    assert workflow_process_stale() == 0  # too young: the request may still run it
    with commit():
        assert workflow_process_stale(now=timezone.now() + timedelta(minutes=1)) == 1
    assert workflow_process_event(event_id=event.pk) == []  # done already
    assert workflow_process_stale(now=timezone.now() + timedelta(minutes=1)) == 0
    assert len(runs(case)) == 1
    assert tags(case) == {"x"}


def test_without_rules_no_events_are_written(team, commit):
    with commit():
        case = CaseFactory(team=team)
        services.case_update(actor=None, case=case, priority="high")
    assert not WorkflowEvent.objects.exists()


# --- messages --------------------------------------------------------------------------------


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address="support@crm.example", team=team, local=True)


def deliver(mailbox, *, subject="Invoice 4711", body="Please correct the invoice.",
            sender="anna@nordwind.example", in_reply_to="", folder="inbox") -> Message:  # fmt: skip
    n = next(_ids)
    return Message.objects.create(
        mailbox=mailbox, folder=mailbox.folders.get(well_known=folder), subject=subject,
        from_address=sender, from_name="Anna Berg", body_text=body,
        to=[{"name": "", "address": mailbox.address}],
        internet_message_id=f"<wf{n}@nordwind.example>", in_reply_to=in_reply_to,
        received_at=timezone.now(),
    )  # fmt: skip


def test_customer_messages_move_cases_to_a_team_and_become_tasks(mailbox, team, commit):
    billing = TeamFactory(name="Accounts")
    lead = make_agent(team=billing)
    make_rule(
        "Invoices to accounts",
        trigger=RuleTrigger.CUSTOMER_MESSAGE,
        conditions=[("message.subject", "contains", "invoice"),
                    ("message.from", "ends_with", "@nordwind.example")],
        actions=[{"kind": "set_team", "team": billing}, {"kind": "set_assignee", "agent": lead},
                 {"kind": "message_to_task"}],
    )  # fmt: skip
    with commit():
        first = services.message_intake(message_id=deliver(mailbox).pk)
    case = first.case
    case.refresh_from_db()
    assert case.team == billing
    assert case.assignee == lead
    [task] = Task.objects.filter(case=case)
    assert task.subject == "Invoice 4711"
    assert task.assignee == lead

    with commit():
        services.message_intake(
            message_id=deliver(mailbox, subject="Re: Lunch", in_reply_to="<wf1@x>").pk
        )
    assert WorkflowRun.objects.filter(rule_name="Invoices to accounts").count() == 1


def test_an_agent_reply_fires_its_trigger_and_not_the_customer_one(mailbox, team, agent, commit):
    make_rule("Customer wrote", trigger=RuleTrigger.CUSTOMER_MESSAGE,
              actions=[{"kind": "add_tag", "value": "customer-wrote"}])  # fmt: skip
    make_rule("Agent replied", trigger=RuleTrigger.AGENT_REPLIED,
              actions=[{"kind": "set_status", "value": "awaiting_customer"}])  # fmt: skip
    with commit():
        case = services.message_intake(message_id=deliver(mailbox).pk).case
    assert tags(case) == {"customer-wrote"}

    # The agent answered from Outlook: the sync brings the answer from Sent Items.
    answer = deliver(mailbox, subject=f"Re: Invoice 4711 [{case.number}]", folder="sentitems",
                     sender=mailbox.address, body="Fixed.")  # fmt: skip
    with commit():
        services.message_intake(message_id=answer.pk)
    case.refresh_from_db()
    assert case.status == CaseStatus.AWAITING_CUSTOMER
    assert [run.rule_name for run in runs(case)] == ["Customer wrote", "Agent replied"]


# --- notifications and emails ------------------------------------------------------------------


def test_watchers_are_notified_and_agents_emailed(team, agent, commit):
    watcher = make_agent(team=team)
    make_rule(
        "Escalated",
        trigger=RuleTrigger.CASE_UPDATED,
        conditions=[("case.priority", "changed_to", "urgent")],
        actions=[
            {"kind": "notify_watchers", "subject": "escalated to {{ case.priority }}"},
            {"kind": "email_agents", "recipients": "team", "subject": "{{ case.number }} urgent",
             "body": "{{ case.title }} for {{ customer.name }} is urgent now."},
        ],
    )  # fmt: skip
    case = CaseFactory(team=team, title="Printer <b>fire</b>",
                       customer=CustomerFactory(name="Ann & Co"))  # fmt: skip
    services.case_add_watcher(actor=None, case=case, watcher=watcher)

    with commit():
        services.case_update(actor=agent, case=case, priority="urgent")

    note = Notification.objects.get(recipient=watcher)
    assert note.title == f"{case.number}: escalated to Urgent"
    assert note.kind == "workflow"
    sent = sorted(message.to[0] for message in mail.outbox)
    assert sent == sorted([agent.email, watcher.email])
    assert mail.outbox[0].subject == f"{case.number} urgent"
    assert mail.outbox[0].body == "Printer <b>fire</b> for Ann & Co is urgent now."


# --- time-based rules ----------------------------------------------------------------------------


@pytest.fixture
def berlin():
    calendar = BusinessCalendar.objects.create(name="Berlin", timezone="Europe/Berlin",
                                               is_default=True)  # fmt: skip
    for weekday in range(5):
        BusinessHours.objects.create(calendar=calendar, weekday=weekday, start=time(9),
                                     end=time(17))  # fmt: skip
    return calendar


def waiting_since(case, moment):
    """As if the case had entered its current status at `moment`."""
    CaseStatusPeriod.objects.filter(case=case, ended_at__isnull=True).update(started_at=moment)


def test_a_time_based_rule_fires_once_per_case_after_business_hours(team, berlin, commit):
    make_rule(
        "Close silent cases",
        trigger=RuleTrigger.TIME,
        time_anchor="status_since",
        time_hours=16,  # two business days
        time_business=True,
        conditions=[("case.status", "is", "awaiting_customer")],
        actions=[{"kind": "add_note", "body": "No answer for two business days."},
                 {"kind": "set_status", "value": "resolved"}],
    )  # fmt: skip
    waiting, other = CaseFactory(team=team), CaseFactory(team=team)
    for case in (waiting, other):
        services.case_change_status(actor=None, case=case, status="awaiting_customer")
    services.case_change_status(actor=None, case=other, status="in_progress")
    waiting_since(waiting, MONDAY_10)

    friday = MONDAY_10 + timedelta(days=4)
    # Wednesday 09:59 Berlin: 15 h 59 min of business time (calendar time: nearly two days)
    assert workflow_run_timed(now=MONDAY_10 + timedelta(days=1, hours=23, minutes=59)).events == 0
    with commit():
        assert workflow_run_timed(now=friday).events == 1
        assert workflow_run_timed(now=friday).events == 0  # fired for this anchor already
    waiting.refresh_from_db()
    assert waiting.status == CaseStatus.RESOLVED
    assert waiting.notes.get().body == "No answer for two business days."
    assert runs(other) == []

    # Reopened and waiting again: a new anchor, so the rule may fire again later.
    services.case_change_status(actor=None, case=waiting, status="in_progress")
    services.case_change_status(actor=None, case=waiting, status="awaiting_customer")
    waiting_since(waiting, friday)
    with commit():
        assert workflow_run_timed(now=friday + timedelta(hours=1)).events == 0
        assert workflow_run_timed(now=friday + timedelta(days=4)).events == 1
    assert len(runs(waiting)) == 2


def test_time_based_rules_work_in_bounded_batches(team, commit):
    make_rule("Stale", trigger=RuleTrigger.TIME, time_anchor="created", time_hours=1,
              actions=[{"kind": "add_tag", "value": "stale"}])  # fmt: skip
    cases = [CaseFactory(team=team) for _ in range(5)]
    later = timezone.now() + timedelta(hours=2)
    with commit():
        first = workflow_run_timed(now=later, batch=3)
        second = workflow_run_timed(now=later, batch=3)
        third = workflow_run_timed(now=later, batch=3)
    assert (first.events, first.more) == (3, True)
    assert (second.events, second.more) == (2, False)
    assert third.events == 0
    assert all(tags(case) == {"stale"} for case in cases)


def test_overdue_tasks_fire_once_per_due_time(team, agent, commit):
    make_rule("Overdue", trigger=RuleTrigger.TASK_OVERDUE,
              actions=[{"kind": "notify_watchers", "subject": "a task is overdue"},
                       {"kind": "add_tag", "value": "overdue"}])  # fmt: skip
    case = CaseFactory(team=team)
    services.case_add_watcher(actor=None, case=case, watcher=agent)
    soon = timezone.now() + timedelta(hours=1)
    task = TaskFactory(case=case, due_at=soon)
    TaskFactory(case=case, due_at=timezone.now() - timedelta(days=30))  # before the rule: never

    assert workflow_run_timed(now=soon - timedelta(minutes=1)).events == 0
    with commit():
        assert workflow_run_timed(now=soon + timedelta(minutes=1)).events == 1
        assert workflow_run_timed(now=soon + timedelta(minutes=2)).events == 0
    assert tags(case) == {"overdue"}
    assert Notification.objects.filter(recipient=agent, kind="workflow").count() == 1

    services.task_update(actor=None, task=task, due_at=soon + timedelta(days=1))
    with commit():
        assert workflow_run_timed(now=soon + timedelta(days=2)).events == 1  # the new due time


# --- SLA -----------------------------------------------------------------------------------


def test_an_sla_breach_fires_its_rule(team, berlin, commit):
    from cases.models import SlaPolicy, SlaTarget
    from cases.services.sla import sla_config_changed, sla_tick

    policy = SlaPolicy.objects.create(name="Standard", is_default=True, calendar=berlin)
    SlaTarget.objects.create(policy=policy, priority="normal", metric="first_response", minutes=60)
    sla_config_changed()
    lead = make_agent(team=team)
    make_rule("Escalate breaches", trigger=RuleTrigger.SLA_BREACHED,
              conditions=[("sla.metric", "is", "first_response")],
              actions=[{"kind": "set_priority", "value": "urgent"},
                       {"kind": "set_assignee", "agent": lead}])  # fmt: skip
    case = CaseFactory(team=team)
    Case.objects.filter(pk=case.pk).update(created_at=MONDAY_10)
    CaseStatusPeriod.objects.filter(case=case).update(started_at=MONDAY_10)
    from cases.services.sla import sla_refresh

    sla_refresh(case=case, now=MONDAY_10)

    with commit():
        sla_tick(now=MONDAY_10 + timedelta(hours=2))
    case.refresh_from_db()
    assert case.priority == "urgent"
    assert case.assignee == lead
    assert [run.trigger for run in runs(case)] == ["sla_breached"]


def test_the_demo_rules_are_valid_and_work(team, commit):
    from cases.demo.workflows import demo_rules_create
    from cases.workflow.compiled import active_rules

    assert demo_rules_create() == 3
    assert demo_rules_create() == 0  # never over existing rules
    assert active_rules().broken == {}
    with commit():
        case = CaseFactory(team=team, title="Mail server down since 9:00")
    case.refresh_from_db()
    assert case.priority == "urgent"
    assert tags(case) == {"outage"}
    assert case.tasks.get().subject.startswith("Call ")
