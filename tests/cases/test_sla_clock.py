"""The SLA clock: the first matching policy sets each target's deadline in business time,
pauses while the case waits on the customer, moves to at risk and breached with one event
each, and is recomputed when a calendar changes."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest

from cases import services
from cases.choices import CaseStatus, SlaState, TimelineKind
from cases.models import (
    BusinessCalendar,
    BusinessHours,
    Case,
    CaseStatusPeriod,
    Holiday,
    SlaPolicy,
    SlaTarget,
    TimelineEvent,
)
from cases.services.sla import sla_config_changed, sla_recompute_all, sla_refresh, sla_tick
from crm.models import AgentProfile
from tests.cases.factories import CaseFactory, CustomerFactory

pytestmark = pytest.mark.django_db

# Monday 23 November 2026, 10:00 in Berlin (09:00 UTC): business hours Mon-Fri 09-17.
MONDAY_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def calendar():
    calendar = BusinessCalendar.objects.create(name="Berlin", timezone="Europe/Berlin",
                                               is_default=True)  # fmt: skip
    for weekday in range(5):
        BusinessHours.objects.create(
            calendar=calendar, weekday=weekday, start=time(9), end=time(17)
        )
    return calendar


def policy(name="Standard", *, order=100, is_default=False, targets=None, **conditions):
    row = SlaPolicy.objects.create(name=name, order=order, is_default=is_default, **{
        k: v for k, v in conditions.items() if k not in ("teams", "tags")})  # fmt: skip
    for relation in ("teams", "tags"):
        if relation in conditions:
            getattr(row, relation).set(conditions[relation])
    targets = targets or {"normal": (60, 120, 480)}
    for priority, minutes in targets.items():
        for metric, value in zip(("first_response", "next_response", "resolution"), minutes,
                                 strict=True):  # fmt: skip
            SlaTarget.objects.create(policy=row, priority=priority, metric=metric, minutes=value)
    sla_config_changed()
    return row


@pytest.fixture
def standard(calendar):
    return policy(is_default=True)


def opened_at(case: Case, moment: datetime) -> Case:
    """As if the case had been opened at `moment`."""
    Case.objects.filter(pk=case.pk).update(created_at=moment)
    CaseStatusPeriod.objects.filter(case=case).update(started_at=moment)
    case.refresh_from_db()
    sla_refresh(case=case, now=moment)
    case.refresh_from_db()
    return case


def test_a_new_case_gets_deadlines_in_business_time_and_the_api_shows_them(standard, team, api):
    case = opened_at(CaseFactory(team=team), MONDAY_10)

    assert case.sla_policy == standard
    assert case.sla_first_response_due == MONDAY_10 + HOUR
    assert case.sla_resolution_due == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tue 10:00
    assert case.sla_first_response_state == SlaState.ON_TRACK
    assert case.sla_next_response_state == ""  # applies after the first response
    assert case.sla_due == case.sla_first_response_due

    body = api.get(f"/api/v1/cases/{case.pk}").json()["sla"]
    assert body["policy"] == "Standard"
    assert body["first_response"]["state"] == "on_track"
    assert body["first_response"]["due_at"].startswith("2026-11-23T10:00")
    assert body["next_response"] is None
    assert isinstance(body["resolution"]["remaining_seconds"], int)


def test_out_of_hours_cases_start_at_the_next_opening_and_weekends_do_not_count(standard, team):
    friday_evening = datetime(2026, 11, 27, 18, 0, tzinfo=UTC)  # 19:00 Berlin
    case = opened_at(CaseFactory(team=team), friday_evening)
    assert case.sla_first_response_due == datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # Mon 10:00


def test_the_tick_moves_to_at_risk_then_breached_with_one_event_each(standard, team):
    case = opened_at(CaseFactory(team=team), MONDAY_10)

    assert sla_tick(now=MONDAY_10 + timedelta(minutes=47)).at_risk == 0
    result = sla_tick(now=MONDAY_10 + timedelta(minutes=49))  # 80 % of 60 minutes used
    assert (result.at_risk, result.breached) == (1, 0)
    case.refresh_from_db()
    assert case.sla_first_response_state == SlaState.AT_RISK
    assert sla_tick(now=MONDAY_10 + timedelta(minutes=50)).at_risk == 0

    result = sla_tick(now=MONDAY_10 + HOUR)
    assert result.breached == 1
    case.refresh_from_db()
    assert case.sla_first_response_state == SlaState.BREACHED
    assert sla_tick(now=MONDAY_10 + 2 * HOUR).breached == 0
    kinds = list(
        TimelineEvent.objects.filter(case=case, kind__startswith="sla_").values_list(
            "kind", "data__metric"
        )
    )
    assert kinds == [
        (TimelineKind.SLA_AT_RISK, "first_response"),
        (TimelineKind.SLA_BREACHED, "first_response"),
    ]


def test_the_assignee_is_told_when_a_target_is_at_risk(
    standard, team, agent, mailoutbox, django_capture_on_commit_callbacks
):
    case = opened_at(CaseFactory(team=team, assignee=agent), MONDAY_10)
    AgentProfile.objects.filter(user=agent).update(notify_sla_risk=True)

    with django_capture_on_commit_callbacks(execute=True):
        sla_tick(now=MONDAY_10 + timedelta(minutes=50))

    assert [m.to for m in mailoutbox] == [[agent.email]]
    assert f"{case.number}: SLA first response at risk" in mailoutbox[0].subject

    AgentProfile.objects.filter(user=agent).update(notify_sla_risk=False)
    with django_capture_on_commit_callbacks(execute=True):
        sla_tick(now=MONDAY_10 + 2 * HOUR)
    assert len(mailoutbox) == 1


def test_a_response_meets_the_target_and_a_customer_message_starts_the_next_one(
    standard, team, agent
):
    case = opened_at(CaseFactory(team=team), MONDAY_10)
    answered = MONDAY_10 + timedelta(minutes=30)
    Case.objects.filter(pk=case.pk).update(first_response_at=answered, waiting_since=None)
    sla_refresh(case=case, now=answered)
    case.refresh_from_db()
    assert case.sla_first_response_state == SlaState.MET
    assert case.sla_next_response_state == ""

    wrote = MONDAY_10 + 2 * HOUR
    Case.objects.filter(pk=case.pk).update(waiting_since=wrote)
    sla_refresh(case=case, now=wrote)
    case.refresh_from_db()
    assert case.sla_next_response_due == wrote + 2 * HOUR
    assert case.sla_next_response_state == SlaState.ON_TRACK
    assert case.sla_due == case.sla_next_response_due


def test_awaiting_the_customer_pauses_every_clock_and_the_pause_is_not_counted(
    standard, team, agent
):
    case = opened_at(CaseFactory(team=team, assignee=agent), MONDAY_10)
    paused = MONDAY_10 + timedelta(minutes=20)
    services.case_change_status(
        actor=agent, case=case, status=CaseStatus.AWAITING_CUSTOMER, now=paused
    )
    case.refresh_from_db()
    assert case.sla_first_response_state == SlaState.PAUSED
    assert case.sla_first_response_due is None
    assert sla_tick(now=MONDAY_10 + 5 * HOUR).breached == 0  # paused targets are left alone

    resumed = paused + 3 * HOUR
    services.case_change_status(actor=agent, case=case, status=CaseStatus.IN_PROGRESS, now=resumed)
    case.refresh_from_db()
    assert case.sla_first_response_state == SlaState.ON_TRACK
    assert case.sla_first_response_due == MONDAY_10 + HOUR + 3 * HOUR


def test_resolving_concludes_the_targets(standard, team, agent):
    case = opened_at(CaseFactory(team=team, assignee=agent), MONDAY_10)
    services.case_change_status(
        actor=agent, case=case, status=CaseStatus.RESOLVED, now=MONDAY_10 + 2 * HOUR
    )
    case.refresh_from_db()
    assert case.sla_resolution_state == SlaState.MET
    assert case.sla_first_response_state == SlaState.BREACHED  # nobody answered within 1 h
    assert case.sla_due == case.sla_first_response_due


def test_the_first_matching_policy_applies_in_order(calendar, team):
    standard = policy(is_default=True)
    vip = policy("VIP", order=1, vip="vip", targets={"normal": (15, 30, 120)})
    urgent = policy("Urgent only", order=2, priorities=["urgent"],
                    targets={"urgent": (30, 60, 240)})  # fmt: skip
    other_team = policy("Other team", order=0, teams=[], targets={"normal": (5, 5, 5)})
    other_team.teams.set([CaseFactory().team])
    sla_config_changed()

    plain = CaseFactory(team=team)
    important = CaseFactory(team=team, customer=CustomerFactory(is_vip=True))
    burning = CaseFactory(team=team, priority="urgent")

    assert (plain.sla_policy_id, important.sla_policy_id, burning.sla_policy_id) == (
        standard.pk, vip.pk, urgent.pk,
    )  # fmt: skip
    # A policy without a target for the case's priority sets none.
    no_target = CaseFactory(team=team, priority="low")
    assert no_target.sla_policy_id == standard.pk
    assert no_target.sla_first_response_state == ""


def test_changing_the_priority_selects_new_targets(standard, team, agent, api):
    SlaTarget.objects.create(policy=standard, priority="urgent", metric="first_response",
                             minutes=15)  # fmt: skip
    sla_config_changed()
    case = CaseFactory(team=team)
    before = case.sla_first_response_due

    api.patch(f"/api/v1/cases/{case.pk}", {"priority": "urgent"}, format="json")

    case.refresh_from_db()
    assert case.sla_first_response_due < before


def test_a_calendar_change_recomputes_every_open_case(standard, calendar, team):
    case = opened_at(CaseFactory(team=team), MONDAY_10)
    resolved = opened_at(CaseFactory(team=team), MONDAY_10)
    Case.objects.filter(pk=resolved.pk).update(status=CaseStatus.RESOLVED,
                                               resolved_at=MONDAY_10 + HOUR)  # fmt: skip
    assert case.sla_resolution_due == datetime(2026, 11, 24, 9, 0, tzinfo=UTC)  # Tue 10:00

    Holiday.objects.create(calendar=calendar, date=date(2026, 11, 24), name="Staff day")
    sla_config_changed()
    changed = sla_recompute_all(now=MONDAY_10)

    case.refresh_from_db()
    assert case.sla_resolution_due == datetime(2026, 11, 25, 9, 0, tzinfo=UTC)  # Wed 10:00
    assert changed == 1  # the resolved case is left as it was


def test_queues_filter_and_sort_by_sla(standard, team, api):
    late = opened_at(CaseFactory(team=team, title="late"), MONDAY_10 - 30 * HOUR)
    soon = opened_at(CaseFactory(team=team, title="soon"), MONDAY_10)
    sla_tick(now=MONDAY_10 + timedelta(minutes=5))

    breached = api.get("/api/v1/cases", {"sla": "breached"}).json()["results"]
    ordered = api.get("/api/v1/cases", {"ordering": "sla_due"}).json()["results"]

    assert [c["number"] for c in breached] == [late.number]
    assert [c["number"] for c in ordered][:2] == [late.number, soon.number]
    bad = api.get("/api/v1/cases", {"sla": "nonsense"})
    assert bad.status_code == 400


def test_the_web_queue_sorts_and_filters_by_sla(standard, team, agent):
    from django.test import Client

    late = opened_at(CaseFactory(team=team, title="late one"), MONDAY_10 - 30 * HOUR)
    soon = opened_at(CaseFactory(team=team, title="soon one"), MONDAY_10)
    CaseFactory(team=team, title="no target", priority="low")
    sla_tick(now=MONDAY_10 + timedelta(minutes=5))
    web = Client()
    web.force_login(agent)

    by_deadline = web.get("/cases/", {"view": "all", "sort": "sla"}).content.decode()
    breached = web.get("/cases/", {"view": "all", "sla": "breached"}).content.decode()

    assert by_deadline.index(late.number) < by_deadline.index(soon.number)
    assert by_deadline.index(soon.number) < by_deadline.index("no target")
    assert "Breached" in by_deadline
    assert late.number in breached
    assert soon.number not in breached
