"""Case services: the rules of the case lifecycle, enforced in one place."""

from datetime import timedelta

import pytest
from django.utils import timezone

from cases import selectors, services
from cases.choices import CASE_TRANSITIONS, CaseStatus
from cases.errors import (
    CaseError,
    InvalidAssignee,
    InvalidLink,
    InvalidMerge,
    InvalidTransition,
    NoAgentAvailable,
    ReopenWindowPassed,
)
from cases.models import Case, TimelineEvent
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db


def kinds(case: Case) -> list[str]:
    return list(TimelineEvent.objects.filter(case=case).values_list("kind", flat=True))


def test_a_new_case_gets_a_permanent_human_number_and_a_created_event():
    team = TeamFactory(name="Billing")
    agent = make_agent(team=team)
    organization = OrganizationFactory(name="Acme", domains=["acme.example"])
    customer = CustomerFactory(name="Ada", emails=["ada@acme.example"])

    case = services.case_create(actor=agent, title="Invoice wrong", team=team, customer=customer)
    services.case_update(actor=agent, case=case, title="Invoice shows wrong VAT")

    case.refresh_from_db()
    assert case.number == f"CASE-{case.pk:06d}"
    assert case.organization == organization
    assert case.created_by == agent
    assert kinds(case) == ["created", "field_changed"]
    change = case.timeline.last()
    assert change.summary == "Title: Invoice wrong → Invoice shows wrong VAT"
    assert change.data == {
        "field": "title",
        "old": "Invoice wrong",
        "new": "Invoice shows wrong VAT",
    }
    assert change.actor == agent


def test_a_case_needs_a_title():
    with pytest.raises(CaseError, match="needs a title"):
        services.case_create(actor=None, title="  ", team=TeamFactory())


@pytest.mark.parametrize(
    ("old", "new"),
    [(old, new) for old, targets in CASE_TRANSITIONS.items() for new in targets],
)
def test_every_allowed_transition_is_accepted_and_recorded(old, new):
    case = CaseFactory()
    Case.objects.filter(pk=case.pk).update(status=old, closed_at=timezone.now())

    services.case_change_status(actor=None, case=case, status=new)

    case.refresh_from_db()
    assert case.status == new
    event = case.timeline.last()
    assert event.kind == "status_changed"
    assert event.data["old"] == old
    assert event.data["new"] == new


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (old, new)
        for old in CaseStatus.values
        for new in CaseStatus.values
        if new != old and new not in CASE_TRANSITIONS[old]
    ],
)
def test_every_other_transition_is_refused_with_a_message_and_changes_nothing(old, new):
    case = CaseFactory()
    Case.objects.filter(pk=case.pk).update(status=old)
    before = case.timeline.count()

    with pytest.raises(InvalidTransition, match="cannot become") as error:
        services.case_change_status(actor=None, case=case, status=new)

    assert error.value.field == "status"
    case.refresh_from_db()
    assert case.status == old
    assert case.timeline.count() == before


def test_unknown_status_is_refused():
    with pytest.raises(InvalidTransition, match="is not a case status"):
        services.case_change_status(actor=None, case=CaseFactory(), status="done")


def test_resolving_and_closing_stamp_times_and_reopening_clears_them():
    case = CaseFactory()

    services.case_change_status(actor=None, case=case, status="resolved")
    resolved_at = case.resolved_at
    services.case_change_status(actor=None, case=case, status="closed")
    closed = Case.objects.get(pk=case.pk)
    services.case_change_status(actor=None, case=case, status="in_progress")

    assert resolved_at is not None
    assert closed.resolved_at == resolved_at
    assert closed.closed_at is not None
    case.refresh_from_db()
    assert case.resolved_at is None
    assert case.closed_at is None
    assert case.timeline.last().summary == "Reopened: Closed → In progress"


def test_a_closed_case_reopens_only_within_the_teams_window():
    team = TeamFactory(reopen_window_days=7)
    recent, old = CaseFactory(team=team), CaseFactory(team=team)
    for case in (recent, old):
        services.case_change_status(actor=None, case=case, status="closed")
    Case.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=8))

    services.case_change_status(actor=None, case=recent, status="in_progress")
    with pytest.raises(ReopenWindowPassed, match="closed more than 7 days ago; open a follow-up"):
        services.case_change_status(actor=None, case=old, status="in_progress")


def test_assignment_is_recorded_and_limited_to_team_members():
    billing, tech = TeamFactory(name="Billing"), TeamFactory(name="Tech")
    ann = make_agent(team=billing, first_name="Ann", last_name="Lee")
    outsider = make_agent(team=tech)
    case = CaseFactory(team=billing)

    services.case_assign(actor=ann, case=case, assignee=ann)
    with pytest.raises(InvalidAssignee, match="is not a member of team Billing"):
        services.case_assign(actor=ann, case=case, assignee=outsider)

    case.refresh_from_db()
    assert case.assignee == ann
    assert case.timeline.last().summary == "Assigned: assignee — → Ann Lee"


def test_moving_a_case_to_another_team_with_a_member_of_it():
    billing, tech = TeamFactory(name="Billing"), TeamFactory(name="Tech")
    tom = make_agent(team=tech)
    case = CaseFactory(team=billing)

    services.case_assign(actor=None, case=case, team=tech, assignee=tom)

    case.refresh_from_db()
    assert (case.team, case.assignee) == (tech, tom)
    assert case.timeline.last().data["old_team"] == billing.pk


def test_deactivated_agents_cannot_be_assigned():
    team = TeamFactory()
    gone = make_agent(team=team)
    gone.is_active = False
    gone.save()

    with pytest.raises(InvalidAssignee, match="deactivated"):
        services.case_assign(actor=None, case=CaseFactory(team=team), assignee=gone)


def test_round_robin_rotates_and_skips_away_paused_and_full_agents():
    team = TeamFactory()
    first, second = make_agent(team=team), make_agent(team=team)
    make_agent(team=team, availability="away")
    make_agent(team=team, paused=True)
    full = make_agent(team=team, capacity=1)
    services.case_assign(actor=None, case=CaseFactory(team=team), assignee=full)

    picked = [
        services.case_assign_round_robin(actor=None, case=CaseFactory(team=team)).assignee
        for _ in range(4)
    ]

    assert picked == [first, second, first, second]


def test_round_robin_without_anyone_available_says_so():
    team = TeamFactory(name="Night shift")
    make_agent(team=team, availability="offline")

    with pytest.raises(NoAgentAvailable, match="No agent in Night shift is available"):
        services.case_assign_round_robin(actor=None, case=CaseFactory(team=team))


def test_merging_moves_tasks_notes_and_timeline_and_the_old_number_keeps_resolving():
    team = TeamFactory()
    agent = make_agent(team=team)
    source, target = CaseFactory(team=team), CaseFactory(team=team)
    task = TaskFactory(case=source, assignee=agent)
    note = services.case_add_note(actor=agent, case=source, body="Customer called twice")
    services.case_add_watcher(actor=agent, case=source, watcher=agent)

    services.case_merge(actor=agent, source=source, target=target)

    source.refresh_from_db()
    task.refresh_from_db()
    note.refresh_from_db()
    assert source.merged_into == target
    assert source.status == "closed"
    assert task.case == target
    assert note.case == target
    assert agent in target.watchers.all()
    assert kinds(target).count("created") == 2, "the source's history moved to the target"
    assert kinds(source) == ["merged_into"]
    assert target.timeline.last().summary == f"{source.number} merged into this case"
    assert selectors.case_get_by_number(user=agent, number=source.number) == target


def test_merge_refuses_itself_a_merged_target_and_a_merged_source():
    a, b, c = CaseFactory(), CaseFactory(), CaseFactory()
    services.case_merge(actor=None, source=b, target=c)

    with pytest.raises(InvalidMerge, match="cannot be merged into itself"):
        services.case_merge(actor=None, source=a, target=a)
    with pytest.raises(InvalidMerge, match="merge into that one instead"):
        services.case_merge(actor=None, source=a, target=b)
    with pytest.raises(InvalidMerge, match="already merged"):
        services.case_merge(actor=None, source=b, target=a)


def test_cases_merged_into_a_case_that_is_merged_later_resolve_to_the_last_one():
    a, b, c = CaseFactory(), CaseFactory(), CaseFactory()
    services.case_merge(actor=None, source=a, target=b)
    services.case_merge(actor=None, source=b, target=c)

    a.refresh_from_db()
    assert a.merged_into == c


def test_links_are_recorded_on_both_cases_and_not_duplicated():
    a, b = CaseFactory(), CaseFactory()

    services.case_link(actor=None, case=a, other=b, kind="duplicate")

    assert kinds(a)[-1] == kinds(b)[-1] == "linked"
    with pytest.raises(InvalidLink, match="already linked"):
        services.case_link(actor=None, case=b, other=a)
    with pytest.raises(InvalidLink, match="itself"):
        services.case_link(actor=None, case=a, other=a)
    services.case_unlink(actor=None, case=b, other=a)
    with pytest.raises(InvalidLink, match="not linked"):
        services.case_unlink(actor=None, case=b, other=a)


def test_parent_and_child_cases_refuse_cycles():
    parent, child, grandchild = CaseFactory(), CaseFactory(), CaseFactory()
    services.case_set_parent(actor=None, case=child, parent=parent)
    services.case_set_parent(actor=None, case=grandchild, parent=child)

    with pytest.raises(InvalidLink, match="its own ancestor"):
        services.case_set_parent(actor=None, case=parent, parent=grandchild)
    assert list(parent.children.all()) == [child]


def test_internal_notes_record_mentions_of_agents():
    team = TeamFactory()
    author = make_agent(team=team)
    make_agent(team=team, email="maria.k@support.example")
    make_agent(team=team, email="tom@support.example")
    case = CaseFactory(team=team)

    note = services.case_add_note(
        actor=author, case=case, body="@maria.k please check, cc @tom@support.example and @nobody"
    )

    assert {u.email for u in note.mentions.all()} == {
        "maria.k@support.example",
        "tom@support.example",
    }
    assert case.timeline.last().kind == "note_added"
    with pytest.raises(CaseError, match="cannot be empty"):
        services.case_add_note(actor=author, case=case, body="   ")


def test_tags_are_normalised_and_changes_recorded():
    case = CaseFactory()

    services.case_set_tags(actor=None, case=case, names=["VAT", "Billing Issue", "vat"])
    services.case_set_tags(actor=None, case=case, names=["billing-issue"])

    assert list(case.tags.values_list("name", flat=True)) == ["billing-issue"]
    assert case.timeline.last().summary == "Tags: −vat"


def test_update_refuses_fields_that_have_their_own_service():
    with pytest.raises(CaseError, match="dedicated services for: status"):
        services.case_update(actor=None, case=CaseFactory(), status="closed")


def test_moving_a_case_to_another_team_releases_tasks_of_agents_outside_it():
    billing, tech = TeamFactory(name="Billing"), TeamFactory(name="Tech")
    ann, tom = make_agent(team=billing), make_agent(team=tech)
    case = CaseFactory(team=billing)
    task = TaskFactory(case=case, assignee=ann, subject="Check invoice")
    old_seq = task.change_seq

    services.case_assign(actor=None, case=case, team=tech, assignee=tom)

    task.refresh_from_db()
    assert task.assignee is None
    assert task.change_seq is None
    assert (
        case.timeline.last().summary
        == f"Task “Check invoice” unassigned: {ann} is not in team Tech"
    )
    from crm import changes

    left = changes.task_list(ann.pk).tombstones.get(item_id=task.pk)
    assert left.change_seq > old_seq


def test_merging_into_another_teams_case_releases_tasks_of_agents_outside_it():
    billing, tech = TeamFactory(name="Billing"), TeamFactory(name="Tech")
    ann = make_agent(team=billing)
    shared = make_agent(team=billing)
    from crm import services as crm_services

    crm_services.team_membership_set(team=tech, user=shared)
    source, target = CaseFactory(team=billing), CaseFactory(team=tech)
    stray = TaskFactory(case=source, assignee=ann)
    kept = TaskFactory(case=source, assignee=shared)

    services.case_merge(actor=None, source=source, target=target)

    stray.refresh_from_db()
    kept.refresh_from_db()
    assert (stray.case, stray.assignee) == (target, None)
    assert (kept.case, kept.assignee) == (target, shared)
