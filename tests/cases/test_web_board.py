"""The tasks board over HTTP: columns by status scoped as the task list is, a constant number of
queries however many tasks there are, moving a card (and being refused), "make a task" from a
message of a case, and the SLA clocks the case header and the queue render for sla.js."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases import services
from cases.choices import MessageDirection, SlaState, TaskStatus
from cases.models import Case, Task, TimelineEvent
from cases.web.board import CLOSED_DAYS, COLUMN_LIMIT
from crm.choices import Role
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import CaseFactory, TaskFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
BOARD = "/tasks/board"


@pytest.fixture
def other_team():
    return TeamFactory(name="Elsewhere")


def columns(response) -> dict[str, list[int]]:
    """Task ids per column, in the order the board shows them."""
    page = response.content.decode()
    found: dict[str, list[int]] = {}
    for section in re.findall(r'<section class="board-column.*?</section>', page, re.S):
        status = re.search(r'data-column="(\w+)"', section).group(1)
        found[status] = [int(pk) for pk in re.findall(r'data-task="(\d+)"', section)]
    return found


def count_of(response, status: str) -> int:
    page = response.content.decode()
    section = re.search(rf'data-column="{status}".*?data-column-count>(\d+)<', page, re.S)
    return int(section.group(1))


def status_url(task: Task) -> str:
    return reverse("web:task-board-status", args=[task.pk])


def queries_for(client: Client, url: str) -> int:
    from django.db import connection

    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 200
    return len(queries)


# --- the board ------------------------------------------------------------------------------


@pytest.fixture
def world(agent, team, other_team):
    colleague = make_agent(team=team, first_name="Colin")
    case = CaseFactory(team=team)
    hidden_case = CaseFactory(team=other_team)
    now = timezone.now()
    w = {
        "case": case,
        "colleague": colleague,
        "mine": TaskFactory(case=case, assignee=agent, subject="Mine", due_at=now + timedelta(1)),
        "mine_late": TaskFactory(
            case=case, assignee=agent, subject="Mine late", due_at=now - timedelta(1)
        ),
        "started": TaskFactory(case=case, assignee=agent, subject="Started"),
        "colleagues": TaskFactory(case=case, assignee=colleague, subject="Colin's"),
        "unassigned": TaskFactory(case=case, subject="Nobody's", priority="high"),
        "hidden": TaskFactory(case=hidden_case, subject="Another team's"),
        "resolved": TaskFactory(case=case, assignee=agent, subject="Finished"),
        "closed": TaskFactory(case=case, assignee=agent, subject="Closed lately"),
        "closed_long_ago": TaskFactory(case=case, assignee=agent, subject="Closed long ago"),
    }
    services.task_change_status(actor=None, task=w["started"], status=TaskStatus.IN_PROGRESS)
    services.task_change_status(actor=None, task=w["resolved"], status=TaskStatus.RESOLVED)
    services.task_change_status(actor=None, task=w["closed"], status=TaskStatus.CLOSED)
    services.task_change_status(actor=None, task=w["closed_long_ago"], status=TaskStatus.CLOSED)
    Task.objects.filter(pk=w["closed_long_ago"].pk).update(
        completed_at=now - timedelta(days=CLOSED_DAYS + 1)
    )
    # Someone else's task that is checked off halfway, to show checklist progress.
    checklist = services.task_create(
        actor=None, case=case, assignee=agent, subject="Half done", checklist=["a", "b"]
    )
    services.task_set_checklist(actor=None, task=checklist, items=[("a", True), ("b", False)])
    w["checklist"] = checklist
    return w


def test_the_board_shows_my_tasks_by_status_with_recent_closed_ones(web, world):
    w = world
    response = web.get(BOARD)

    assert response.status_code == 200
    shown = columns(response)
    assert set(shown) == {"new", "in_progress", "resolved", "closed"}
    assert set(shown["new"]) == {w["mine"].pk, w["mine_late"].pk, w["checklist"].pk}
    assert shown["new"][:2] == [w["mine_late"].pk, w["mine"].pk]  # soonest due first
    assert shown["in_progress"] == [w["started"].pk]
    assert shown["resolved"] == [w["resolved"].pk]
    assert shown["closed"] == [w["closed"].pk]  # not the one closed long ago
    assert count_of(response, "closed") == 1
    page = response.content.decode()
    assert f"last {CLOSED_DAYS} days" in page
    assert "1/2 done" in page  # checklist progress
    assert "Overdue" in page
    assert w["case"].number in page
    # The list and the board lead to each other.
    assert 'href="/tasks/?view=mine"' in page
    assert 'href="/tasks/board?view=mine"' in web.get("/tasks/").content.decode()
    assert 'href="/tasks/board?view=all"' in web.get("/tasks/?view=done").content.decode()


def test_the_board_is_scoped_as_the_task_list_is(web, world, agent):
    w = world
    teams = columns(web.get(BOARD + "?view=teams"))
    everything = columns(web.get(BOARD + "?view=all"))

    expected_new = {w["mine"].pk, w["mine_late"].pk, w["colleagues"].pk, w["unassigned"].pk}
    expected_new.add(w["checklist"].pk)
    assert set(teams["new"]) == expected_new
    assert set(everything["new"]) == expected_new  # never another team's task
    visible = set(services_visible_ids(agent))
    assert all(pk in visible for column in everything.values() for pk in column)
    assert w["hidden"].pk not in {pk for column in everything.values() for pk in column}


def services_visible_ids(user) -> list[int]:
    from cases import selectors

    return list(selectors.task_list(user=user).values_list("pk", flat=True))


def test_an_admin_sees_every_team_on_the_all_board(world):
    admin = make_agent(role=Role.ADMIN)
    client = Client()
    client.force_login(admin)

    shown = columns(client.get(BOARD + "?view=all"))

    assert world["hidden"].pk in shown["new"]


def test_board_filters(web, world, agent):
    w = world

    def new_column(**params) -> set[int]:
        return set(columns(web.get(BOARD, {"view": "all", **params}))["new"])

    assert new_column(assignee="none") == {w["unassigned"].pk}
    assert new_column(priority="high") == {w["unassigned"].pk}
    assert new_column(assignee=str(w["colleague"].pk)) == {w["colleagues"].pk}
    assert new_column(overdue="on") == {w["mine_late"].pk}
    today = timezone.localdate()
    assert new_column(due_from=str(today + timedelta(days=1))) == {w["mine"].pk}
    response = web.get(BOARD, {"due_from": "2030-01-02", "due_to": "2030-01-01"})
    assert "The end of the due range is before its start." in response.content.decode()


def test_a_full_column_stops_at_its_limit_and_offers_more(web, agent, team):
    case = CaseFactory(team=team)
    for n in range(COLUMN_LIMIT + 3):
        TaskFactory(case=case, assignee=agent, subject=f"Task {n}")

    response = web.get(BOARD)

    assert len(columns(response)["new"]) == COLUMN_LIMIT
    assert count_of(response, "new") == COLUMN_LIMIT + 3
    page = response.content.decode()
    assert "(3 not shown)" in page
    assert 'href="/tasks/?view=mine&amp;status=new"' in page


def test_board_queries_do_not_grow_with_tasks(web, agent, team, django_assert_max_num_queries):
    def some_tasks(n: int) -> None:
        for i in range(n):
            case = CaseFactory(team=team)
            task = services.task_create(
                actor=None,
                case=case,
                assignee=agent,
                subject=f"T{i}",
                checklist=["one", "two"],
                due_at=timezone.now() + timedelta(hours=i),
            )
            if i % 2:
                services.task_change_status(actor=None, task=task, status="in_progress")

    some_tasks(2)
    few = queries_for(web, BOARD + "?view=all")
    some_tasks(40)
    many = queries_for(web, BOARD + "?view=all")

    assert many == few
    with django_assert_max_num_queries(15):
        web.get(BOARD + "?view=teams&priority=normal")


def test_the_board_needs_a_signed_in_agent():
    response = Client().get(BOARD)
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- moving a card --------------------------------------------------------------------------


def test_moving_a_card_changes_the_status_and_answers_with_the_card(web, world, agent):
    task = world["mine"]

    response = web.post(status_url(task), {"status": "in_progress"}, **HTMX)

    assert response.status_code == 200
    page = response.content.decode()
    assert f'data-task="{task.pk}"' in page
    assert 'data-status="in_progress"' in page
    assert "form-error" not in page
    task.refresh_from_db()
    assert task.status == TaskStatus.IN_PROGRESS
    event = TimelineEvent.objects.filter(case=task.case).order_by("-pk").first()
    assert event.actor == agent
    assert "New → In progress" in event.summary


def test_a_move_the_service_refuses_answers_with_the_card_where_it_was_and_why(web, world):
    task = world["started"]  # in progress cannot go back to new

    response = web.post(status_url(task), {"status": "new"}, **HTMX)

    assert response.status_code == 200
    page = response.content.decode()
    assert 'data-status="in_progress"' in page
    assert "task cannot become new." in page
    assert 'role="alert"' in page
    task.refresh_from_db()
    assert task.status == TaskStatus.IN_PROGRESS

    nonsense = web.post(status_url(task), {"status": "exploded"}, **HTMX)
    assert nonsense.status_code == 200
    assert "is not a task status" in nonsense.content.decode()


def test_a_card_moved_without_javascript_comes_back_to_the_board(web, world):
    task = world["mine"]

    response = web.post(status_url(task), {"status": "resolved", "next": BOARD + "?view=all"})

    assert response.status_code == 302
    assert response["Location"] == BOARD + "?view=all"
    task.refresh_from_db()
    assert task.status == TaskStatus.RESOLVED
    refused = web.post(status_url(task), {"status": "new", "next": "https://evil.example/"})
    assert refused["Location"] == "/tasks/"  # never off the site
    assert "cannot become new" in web.get("/tasks/").content.decode()


def test_a_task_the_agent_cannot_see_cannot_be_moved(web, world):
    hidden = world["hidden"]

    assert web.post(status_url(hidden), {"status": "in_progress"}, **HTMX).status_code == 404
    assert web.post(status_url(hidden), {"status": "in_progress"}).status_code == 404
    hidden.refresh_from_db()
    assert hidden.status == TaskStatus.NEW
    assert web.get(status_url(hidden)).status_code == 405


# --- a task from a message ------------------------------------------------------------------


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address="help@board.example", team=team, local=True)


def deliver(case: Case, mailbox, subject: str = "Invoice 42 is wrong") -> Message:
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=subject,
        from_address="anna@nordwind.example",
        to=[{"name": "Support", "address": mailbox.address}],
        body_text="The VAT on invoice 42 is 21%, it should be 19%.",
        internet_message_id=f"<board{case.pk}.{Message.objects.count()}@nordwind.example>",
        received_at=timezone.now(),
    )
    with transaction.atomic():
        services.case_message_received(
            case=case, message=message, direction=MessageDirection.INBOUND
        )
    return message


def message_task_url(case: Case, message: Message) -> str:
    return reverse("web:case-message-task", args=[case.number, message.pk])


def test_make_a_task_from_a_message_puts_it_on_the_case_and_redraws_the_panel(
    web, team, agent, mailbox
):
    case = CaseFactory(team=team)
    other_case = CaseFactory(team=team)
    message = deliver(case, mailbox)
    page = web.get(reverse("web:case", args=[case.number])).content.decode()
    assert message_task_url(case, message) in page  # the button on the message

    response = web.post(message_task_url(case, message), **HTMX)

    assert response.status_code == 200
    task = Task.objects.get(case=case)
    assert task.subject == "Invoice 42 is wrong"
    assert "19%" in task.description
    assert task.created_by == agent
    assert task.assignee is None
    assert not other_case.tasks.exists()
    body = response.content.decode()
    assert "Task “Invoice 42 is wrong” added" in body
    assert 'id="task-list" class="task-list" hx-swap-oob="true"' in body
    assert f'id="task-{task.pk}"' in body
    assert 'id="timeline"' in body  # the timeline is redrawn too

    web.post(message_task_url(case, message), {"assignee": "me"}, **HTMX)
    assert Task.objects.filter(case=case, assignee=agent).count() == 1


def test_make_a_task_without_javascript_redirects_to_the_case(web, team, mailbox):
    case = CaseFactory(team=team)
    message = deliver(case, mailbox)

    response = web.post(message_task_url(case, message))

    assert response.status_code == 302
    assert response["Location"] == reverse("web:case", args=[case.number])
    assert case.tasks.count() == 1


def test_a_refused_assignee_is_shown_in_the_message_note(web, team, mailbox):
    case = CaseFactory(team=team)
    message = deliver(case, mailbox)
    outsider = make_agent(team=TeamFactory(name="Outsiders"))

    response = web.post(message_task_url(case, message), {"assignee": str(outsider.pk)}, **HTMX)

    assert response.status_code == 200
    assert "is not a member of team" in response.content.decode()
    assert not case.tasks.exists()


def test_make_a_task_needs_a_case_the_agent_can_see_and_a_message_of_it(
    web, team, other_team, mailbox
):
    hidden_case = CaseFactory(team=other_team)
    hidden_message = deliver(hidden_case, mailbox)
    case = CaseFactory(team=team)

    assert web.post(message_task_url(hidden_case, hidden_message), **HTMX).status_code == 404
    # A visible case does not lend its rights to another case's message.
    assert web.post(message_task_url(case, hidden_message), **HTMX).status_code == 404
    assert not Task.objects.exists()


# --- SLA clocks -----------------------------------------------------------------------------


def with_sla(case: Case, **fields) -> Case:
    Case.objects.filter(pk=case.pk).update(**fields)
    return Case.objects.get(pk=case.pk)


def test_the_case_header_has_a_clock_per_target(web, team):
    now = timezone.now()
    case = with_sla(
        CaseFactory(team=team),
        sla_first_response_state=SlaState.AT_RISK,
        sla_first_response_due=now + timedelta(minutes=12),
        sla_resolution_state=SlaState.ON_TRACK,
        sla_resolution_due=now + timedelta(hours=20),
        sla_resolution_risk_at=now + timedelta(hours=16),
        sla_next_response_state=SlaState.PAUSED,
    )

    page = web.get(reverse("web:case", args=[case.number])).content.decode()

    clocks = re.findall(r'<time class="sla-clock[^>]*>[^<]*</time>', page)
    assert len(clocks) == 3
    first, nxt, resolution = clocks
    assert 'data-state="at_risk"' in first
    assert "at risk: 11\xa0minutes left" in first or "at risk: 12\xa0minutes left" in first
    assert re.search(r'datetime="\d{4}-\d\d-\d\dT', first)
    assert 'title="Due ' in first
    assert 'data-state="paused"' in nxt
    assert ">paused<" in nxt
    assert "datetime" not in nxt
    assert 'data-state="on_track"' in resolution
    assert "data-risk-at=" in resolution
    for name in ("First response", "Next response", "Resolution"):
        assert name in page


def test_a_case_without_sla_targets_has_no_clocks(web, team):
    case = CaseFactory(team=team)
    page = web.get(reverse("web:case", args=[case.number])).content.decode()
    assert "sla-clock" not in page


def test_the_queue_sla_column_has_a_clock(web, team):
    now = timezone.now()
    with_sla(
        CaseFactory(team=team, title="Late one"),
        sla_first_response_state=SlaState.BREACHED,
        sla_first_response_due=now - timedelta(minutes=35),
        sla_due=now - timedelta(minutes=35),
    )

    page = web.get("/cases/?view=all").content.decode()

    clock = re.search(r'<time class="sla-clock[^>]*>[^<]*</time>', page).group(0)
    assert 'data-state="breached"' in clock
    assert "breached 35\xa0minutes ago" in clock
    assert "js/sla.js" in page
