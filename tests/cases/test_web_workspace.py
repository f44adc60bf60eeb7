"""The case workspace over HTTP: what an agent sees, what they may change (exactly what the API
lets them), how hostile mail is defused, and a constant number of queries per page."""

from __future__ import annotations

import itertools
import re
from datetime import datetime

import pytest
from django.core.files.base import ContentFile
from django.db import transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from cases import services
from cases.choices import CaseStatus, MessageDirection, TaskStatus
from cases.models import Case, CaseMessage, ChecklistItem, Task, TimelineEvent
from cases.web.mail_render import split_quoted_text, text_to_html
from cases.web.sanitize import safe_style, sanitize_email_html
from crm.choices import Role
from mailsync.models import Attachment, Message
from mailsync.services import mailbox_connect
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db
SUPPORT = "help@workspace.example"
HTMX = {"HTTP_HX_REQUEST": "true"}
_ids = itertools.count(1)


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def client(agent) -> Client:
    client = Client()
    client.force_login(agent)
    return client


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address=SUPPORT, team=team, local=True)


@pytest.fixture
def case(team, agent):
    customer = CustomerFactory(name="Anna Berg", emails=["anna@nordwind.example"])
    return CaseFactory(title="Printer on fire", team=team, customer=customer, actor=agent)


def mail_case(
    case: Case,
    mailbox,
    *,
    subject: str = "Printer on fire",
    text: str = "Please help",
    html: str = "",
    sender: str = "anna@nordwind.example",
    direction: str = MessageDirection.INBOUND,
    received_at: datetime | None = None,
    attachments: tuple[dict, ...] = (),
) -> Message:
    """A message delivered into `case`, as intake leaves it (with its timeline event)."""
    n = next(_ids)
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=subject,
        from_address=sender,
        from_name="Anna Berg",
        to=[{"name": "Support", "address": SUPPORT}],
        cc=[{"name": "", "address": "jon@nordwind.example"}],
        body_text=text,
        body_html=html,
        internet_message_id=f"<ws{n}@nordwind.example>",
        received_at=received_at or timezone.now(),
        has_attachments=bool(attachments),
    )
    for spec in attachments:
        attachment = Attachment(
            message=message,
            name=spec.get("name", "file.bin"),
            content_type=spec.get("content_type", "application/octet-stream"),
            is_inline=spec.get("is_inline", False),
            content_id=spec.get("content_id", ""),
            size=len(spec.get("content", b"")),
        )
        if "content" in spec:
            attachment.content.save(attachment.name, ContentFile(spec["content"]), save=False)
        attachment.save()
    with transaction.atomic():
        services.case_message_received(case=case, message=message, direction=direction)
    return message


def case_url(case: Case, name: str = "web:case", **kwargs) -> str:
    return reverse(name, kwargs={"number": case.number, **kwargs})


def field_url(case: Case, field: str) -> str:
    return case_url(case, "web:case-field", field=field)


def body_url(case: Case, message: Message, **query: str) -> str:
    url = case_url(case, "web:case-message-body", message_id=message.pk)
    return url + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")


def text_of(response) -> str:
    return response.content.decode()


@pytest.fixture(autouse=True)
def _media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path


# --- the page ----------------------------------------------------------------------------------


def test_the_workspace_shows_header_thread_notes_tasks_timeline_and_customer(
    client, case, mailbox, agent
):
    mail_case(case, mailbox, text="The printer is on fire, see https://status.example/fire")
    mail_case(case, mailbox, html="<p>Second <b>message</b></p>", subject="Re: Printer")
    services.case_add_note(actor=agent, case=case, body="Called the customer")
    services.task_create(actor=agent, case=case, subject="Order toner", checklist=["Find SKU"])
    services.case_set_tags(actor=agent, case=case, names=["hardware"])

    response = client.get(case_url(case))

    assert response.status_code == 200
    page = text_of(response)
    assert case.number in page
    assert 'value="Printer on fire"' in page
    assert 'data-shortcut="a"' in page  # assign to me
    assert 'id="field-status"' in page
    assert 'data-shortcut="s"' in page
    # The text message is inline, escaped and linkified; the HTML one is framed, never inline.
    assert '<a target="_blank" rel="noopener noreferrer" href="https://status.example/fire"' in page
    assert "<b>message</b>" not in page
    assert 'sandbox="allow-same-origin allow-popups allow-popups-to-escape-sandbox"' in page
    assert "allow-scripts" not in page
    assert "allow-forms" not in page
    assert "Called the customer" in page
    assert "Order toner" in page
    assert "Find SKU" in page
    assert "Tags: +hardware" in page  # the timeline
    assert "Anna Berg" in page
    assert "anna@nordwind.example" in page
    assert "jon@nordwind.example" in page  # recipients


def test_a_case_the_agent_cannot_see_is_a_404_everywhere(client, mailbox):
    other = CaseFactory(team=TeamFactory(name="Elsewhere"))
    message = mail_case(other, mailbox)
    task = services.task_create(actor=None, case=other, subject="Hidden", checklist=["x"])
    item = task.checklist.get()
    urls = [
        ("get", case_url(other)),
        ("get", body_url(other, message)),
        ("post", field_url(other, "status")),
        ("post", case_url(other, "web:case-assign-to-me")),
        ("post", case_url(other, "web:case-note-add")),
        ("post", case_url(other, "web:case-task-add")),
        ("post", case_url(other, "web:case-task-status", task_id=task.pk)),
        ("post", case_url(other, "web:case-checklist-tick", task_id=task.pk, item_id=item.pk)),
    ]
    for method, url in urls:
        response = getattr(client, method)(url, {"value": "closed"})
        assert response.status_code == 404, url
    assert Case.objects.get(pk=other.pk).status == CaseStatus.NEW


def test_an_unknown_number_is_a_404_and_numbers_are_case_insensitive(client, case):
    assert client.get(reverse("web:case", args=["CASE-999999"])).status_code == 404
    assert client.get(reverse("web:case", args=[case.number.lower()])).status_code == 200


def test_anonymous_visitors_are_sent_to_sign_in(case):
    response = Client().get(case_url(case))
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


def test_an_agent_assigned_a_case_of_another_team_sees_it(mailbox):
    outsider_team = TeamFactory(name="Outside")
    outsider = make_agent(team=outsider_team)
    case = CaseFactory(team=TeamFactory(name="Owners"))
    case.assignee = outsider  # as an admin could leave it; visibility follows the assignee
    case.save(update_fields=["assignee"])
    client = Client()
    client.force_login(outsider)
    assert client.get(case_url(case)).status_code == 200


def _workspace_with(case, mailbox, agent, n: int) -> None:
    for i in range(n):
        mail_case(case, mailbox, text=f"message {i}", html="<p>hi</p>" if i % 2 else "")
        services.case_add_note(actor=agent, case=case, body=f"note {i} for @{agent.email}")
        services.task_create(actor=agent, case=case, subject=f"task {i}", checklist=["a", "b"])
    services.case_set_tags(actor=agent, case=case, names=[f"tag{i}" for i in range(n)])


def test_the_page_costs_the_same_queries_for_one_or_ten_of_everything(
    client, agent, team, mailbox, django_assert_num_queries
):
    customer = CustomerFactory(name="Same Customer")
    small = CaseFactory(team=team, customer=customer, title="small")
    large = CaseFactory(team=team, customer=customer, title="large")
    _workspace_with(small, mailbox, agent, 1)
    _workspace_with(large, mailbox, agent, 10)
    for i in range(10):
        other = CaseFactory(team=team, customer=customer, title=f"other {i}")
        services.case_link(actor=agent, case=large, other=other)
        services.case_set_parent(actor=agent, case=other, parent=large)
    services.case_link(actor=agent, case=small, other=CaseFactory(team=team, title="one"))
    services.case_set_parent(
        actor=agent, case=CaseFactory(team=team, title="kid", customer=customer), parent=small
    )
    assert large.timeline.count() > 40

    with CaptureQueriesContext(transaction.get_connection()) as one:
        assert client.get(case_url(small)).status_code == 200

    with django_assert_num_queries(len(one.captured_queries)):
        response = client.get(case_url(large))
    assert text_of(response).count('class="message ') == 10
    assert text_of(response).count('class="note"') == 10


# --- the header --------------------------------------------------------------------------------


def test_changing_the_status_answers_htmx_with_the_header_and_the_timeline(client, case):
    response = client.post(field_url(case, "status"), {"value": "in_progress"}, **HTMX)

    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == CaseStatus.IN_PROGRESS
    body = text_of(response)
    assert body.lstrip().startswith('<section id="case-header"')
    assert 'id="timeline"' in body
    assert 'aria-labelledby="timeline-title" hx-swap-oob="true"' in body
    assert "Status: New → In progress" in body


def test_a_refused_transition_is_shown_and_changes_nothing(client, case, agent):
    services.case_change_status(actor=agent, case=case, status=CaseStatus.RESOLVED)

    response = client.post(field_url(case, "status"), {"value": "awaiting_customer"}, **HTMX)

    assert response.status_code == 200
    assert "A resolved case cannot become awaiting customer." in text_of(response)
    assert 'role="alert"' in text_of(response)
    case.refresh_from_db()
    assert case.status == CaseStatus.RESOLVED


def test_nonsense_values_get_a_message_not_a_500(client, case):
    cases = {
        "status": "exploded",
        "priority": "whenever",
        "type": "rant",
        "assignee": "not-a-number",
        "team": "99999999999999999999999",
        "title": "   ",
    }
    for field, value in cases.items():
        response = client.post(field_url(case, field), {"value": value}, **HTMX)
        assert response.status_code == 200, field
        assert 'class="form-error"' in text_of(response), field
    assert client.post(field_url(case, "number"), {"value": "X"}, **HTMX).status_code == 404
    case.refresh_from_db()
    assert (case.status, case.priority, case.title) == ("new", "normal", "Printer on fire")


def test_title_priority_type_and_tags_change_through_the_services(client, case):
    client.post(field_url(case, "title"), {"value": "  Printer still on fire "}, **HTMX)
    client.post(field_url(case, "priority"), {"value": "urgent"}, **HTMX)
    client.post(field_url(case, "type"), {"value": "incident"}, **HTMX)
    response = client.post(field_url(case, "tags"), {"value": "Hardware, fire  urgent"}, **HTMX)

    case.refresh_from_db()
    assert (case.title, case.priority, case.type) == ("Printer still on fire", "urgent", "incident")
    assert sorted(case.tags.values_list("name", flat=True)) == ["fire", "hardware", "urgent"]
    assert 'value="fire, hardware, urgent"' in text_of(response)
    kinds = list(case.timeline.values_list("kind", flat=True))
    assert kinds.count("field_changed") == 3
    assert "tags_changed" in kinds


def test_assign_to_me_and_to_a_colleague_of_the_team(client, case, agent, team):
    colleague = make_agent(team=team)
    response = client.post(case_url(case, "web:case-assign-to-me"), **HTMX)
    case.refresh_from_db()
    assert case.assignee == agent
    assert 'data-shortcut="a"' not in text_of(response)  # nothing left to take

    client.post(field_url(case, "assignee"), {"value": str(colleague.pk)}, **HTMX)
    case.refresh_from_db()
    assert case.assignee == colleague

    client.post(field_url(case, "assignee"), {"value": ""}, **HTMX)
    case.refresh_from_db()
    assert case.assignee is None


def test_an_assignee_outside_the_team_is_refused_with_the_services_message(client, case):
    stranger = make_agent(team=TeamFactory(name="Strangers"))

    response = client.post(field_url(case, "assignee"), {"value": str(stranger.pk)}, **HTMX)

    assert f"{stranger} is not a member of team Billing." in text_of(response)
    case.refresh_from_db()
    assert case.assignee is None


def test_an_agent_moves_a_case_only_to_their_own_teams(client, case, agent):
    mine = TeamFactory(name="Second line")
    mine.memberships.create(user=agent)
    foreign = TeamFactory(name="Foreign")

    refused = client.post(field_url(case, "team"), {"value": str(foreign.pk)}, **HTMX)
    assert "You are not a member of this team." in text_of(refused)
    assert f'value="{foreign.pk}"' not in text_of(client.get(case_url(case)))

    client.post(case_url(case, "web:case-assign-to-me"), **HTMX)
    client.post(field_url(case, "team"), {"value": str(mine.pk)}, **HTMX)
    case.refresh_from_db()
    assert (case.team, case.assignee) == (mine, agent)  # a member of both keeps the case


def test_an_admin_moves_a_case_to_any_team_and_a_non_member_assignee_is_dropped(case, agent):
    admin = make_agent(role=Role.ADMIN)
    client = Client()
    client.force_login(admin)
    services.case_assign(actor=agent, case=case, assignee=agent)
    foreign = TeamFactory(name="Foreign")

    client.post(field_url(case, "team"), {"value": str(foreign.pk)}, **HTMX)

    case.refresh_from_db()
    assert (case.team, case.assignee) == (foreign, None)


def test_a_plain_form_post_redirects_back_with_the_error_flashed(client, case):
    response = client.post(field_url(case, "priority"), {"value": "whenever"}, follow=True)

    assert response.redirect_chain[-1][0] == case_url(case)
    assert "“whenever” is not a priority." in text_of(response)


def test_the_queue_query_string_is_passed_back_re_encoded(client, case):
    response = client.get(case_url(case), {"from": 'status=new&q=<script>"x'})
    assert 'href="/cases/?status=new&amp;q=%3Cscript%3E%22x"' in text_of(response)


# --- notes, tasks, checklists ------------------------------------------------------------------


def test_a_note_is_added_and_the_timeline_follows(client, case, agent, team):
    colleague = make_agent(team=team, email="kim@support.example")

    response = client.post(
        case_url(case, "web:case-note-add"), {"body": "Ask @kim about <toner>"}, **HTMX
    )

    assert response.status_code == 200
    body = text_of(response)
    assert body.lstrip().startswith('<ol id="note-list"')
    assert "Ask @kim about &lt;toner&gt;" in body
    assert "Internal note mentioning" in body  # the timeline, out of band
    assert list(case.notes.get().mentions.all()) == [colleague]


def test_an_empty_note_goes_to_the_forms_error_slot(client, case):
    response = client.post(case_url(case, "web:case-note-add"), {"body": "  "}, **HTMX)

    assert response["HX-Retarget"] == "#note-form-error"
    assert "A note cannot be empty." in text_of(response)
    assert not case.notes.exists()


def test_a_task_is_created_with_its_checklist_and_due_in_the_agents_time_zone(client, case, agent):
    agent.profile.timezone = "Europe/Berlin"
    agent.profile.save()

    response = client.post(
        case_url(case, "web:case-task-add"),
        {
            "subject": "Replace fuser",
            "assignee": str(agent.pk),
            "due_at": "2026-12-01T09:30",
            "checklist": "Order part\n\n Book technician \n",
        },
        **HTMX,
    )

    assert response.status_code == 200
    task = case.tasks.get()
    assert (task.subject, task.assignee) == ("Replace fuser", agent)
    assert task.due_at.isoformat() == "2026-12-01T08:30:00+00:00"
    assert list(task.checklist.values_list("text", flat=True)) == ["Order part", "Book technician"]
    assert "Task added: Replace fuser" in text_of(response)
    assert "1 Dec, 09:30" in text_of(response)  # shown back in Berlin time


def test_bad_task_input_is_reported_in_the_form(client, case):
    stranger = make_agent(team=TeamFactory(name="Strangers"))
    for data, message in [
        ({"subject": ""}, "A task needs a subject."),
        ({"subject": "x", "due_at": "tomorrowish"}, "Give the due date as a date and time."),
        ({"subject": "x", "assignee": str(stranger.pk)}, "is not a member of team Billing"),
    ]:
        response = client.post(case_url(case, "web:case-task-add"), data, **HTMX)
        assert response["HX-Retarget"] == "#task-form-error"
        assert message in text_of(response)
    assert not case.tasks.exists()


def test_task_status_changes_and_refusals(client, case, agent):
    task = services.task_create(actor=agent, case=case, subject="Call back")
    url = case_url(case, "web:case-task-status", task_id=task.pk)

    response = client.post(url, {"status": "resolved"}, **HTMX)
    assert response.status_code == 200
    assert (
        text_of(response)
        .lstrip()
        .startswith(f'<li class="task status-resolved" id="task-{task.pk}"')
    )
    task.refresh_from_db()
    assert task.status == TaskStatus.RESOLVED
    assert task.completed_at is not None

    refused = client.post(url, {"status": "new"}, **HTMX)
    assert "A resolved task cannot become new." in text_of(refused)


def test_ticking_one_checklist_item_keeps_the_others(client, case, agent):
    task = services.task_create(actor=agent, case=case, subject="Ship", checklist=["a", "b", "c"])
    services.task_set_checklist(
        actor=agent, task=task, items=[("a", True), ("b", False), ("c", False)]
    )
    a, b = task.checklist.get(text="a"), task.checklist.get(text="b")

    response = client.post(
        case_url(case, "web:case-checklist-tick", task_id=task.pk, item_id=b.pk),
        {"done": "1"},
        **HTMX,
    )

    assert response.status_code == 200
    assert dict(task.checklist.values_list("text", "done")) == {"a": True, "b": True, "c": False}
    assert "2/3 done" in text_of(response)
    assert task.checklist.get(text="b").pk != b.pk  # the service replaced the list...
    a = task.checklist.get(text="a")  # ...so the page links the new rows
    assert f'/checklist/{a.pk}"' in text_of(response)

    client.post(case_url(case, "web:case-checklist-tick", task_id=task.pk, item_id=a.pk), **HTMX)
    assert dict(task.checklist.values_list("text", "done")) == {"a": False, "b": True, "c": False}


def test_checklist_items_are_added_and_a_stale_item_is_a_404(client, case, agent):
    task = services.task_create(actor=agent, case=case, subject="Ship", checklist=["a"])
    url = case_url(case, "web:case-checklist-add", task_id=task.pk)

    client.post(url, {"text": "b"}, **HTMX)
    assert list(task.checklist.values_list("text", flat=True)) == ["a", "b"]
    empty = client.post(url, {"text": " "}, **HTMX)
    assert "Write what the item is." in text_of(empty)

    gone = ChecklistItem.objects.create(task=task, text="temp", position=9)
    gone_pk = gone.pk
    gone.delete()
    tick = case_url(case, "web:case-checklist-tick", task_id=task.pk, item_id=gone_pk)
    assert client.post(tick, {"done": "1"}, **HTMX).status_code == 404


def test_a_task_of_another_case_cannot_be_reached_through_this_one(client, case, team, agent):
    elsewhere = CaseFactory(team=team)
    task = services.task_create(actor=agent, case=elsewhere, subject="Not here")

    response = client.post(
        case_url(case, "web:case-task-status", task_id=task.pk), {"status": "closed"}, **HTMX
    )

    assert response.status_code == 404
    assert Task.objects.get(pk=task.pk).status == TaskStatus.NEW


# --- related cases and the customer ------------------------------------------------------------


def test_the_customer_card_lists_their_other_visible_cases_only(client, case, team):
    customer = case.customer
    visible = CaseFactory(team=team, customer=customer, title="Visible sibling")
    CaseFactory(team=TeamFactory(name="Secret"), customer=customer, title="Secret sibling")

    page = text_of(client.get(case_url(case)))

    assert "Visible sibling" in page
    assert visible.number in page
    assert "Secret sibling" not in page


def test_a_merged_case_says_where_it_went_and_the_target_lists_it(client, case, team, agent):
    target = CaseFactory(team=team, title="The surviving case")
    services.case_merge(actor=agent, source=case, target=target)

    source_page = text_of(client.get(case_url(case)))
    target_page = text_of(client.get(case_url(target)))

    assert "This case was merged into" in source_page
    assert f'href="{case_url(target)}"' in source_page
    assert "Merged into this one" in target_page
    assert case.number in target_page


def test_links_parent_and_children_show_without_leaking_hidden_cases(client, case, team, agent):
    linked = CaseFactory(team=team, title="Linked one")
    services.case_link(actor=agent, case=case, other=linked)
    child = CaseFactory(team=team, title="Child one", parent=case)
    hidden_parent = CaseFactory(team=TeamFactory(name="Secret"), title="Hidden parent")
    services.case_set_parent(actor=None, case=case, parent=hidden_parent)

    page = text_of(client.get(case_url(case)))

    assert "Linked one" in page
    assert "Child one" in page
    assert child.number in page
    assert "Hidden parent" not in page
    assert "a case you cannot see" in page


def test_times_are_shown_in_the_agents_time_zone(client, case, agent, mailbox):
    agent.profile.timezone = "America/New_York"
    agent.profile.save()
    mail_case(case, mailbox, received_at=datetime.fromisoformat("2026-07-01T12:00:00+00:00"))

    page = text_of(client.get(case_url(case)))

    assert "Wed 1 Jul 2026, 08:00" in page


# --- message bodies ----------------------------------------------------------------------------

HOSTILE = """<html><head><title>t</title><meta http-equiv="refresh" content="0;url=https://evil.example/">
<base href="https://evil.example/"><link rel="stylesheet" href="https://evil.example/x.css">
<style>body { background: url(https://evil.example/bg.png) }</style></head>
<body onload="alert(1)">
<p onclick="alert(2)" style="color: red; background-image: url('https://evil.example/css.png')">Hello</p>
<script>alert(3)</script>
<img src="https://tracker.example/pixel.png" onerror="alert(4)" alt="pixel">
<img src="cid:logo@mail" alt="logo"><img src="cid:unknown@mail" alt="nothing">
<a href="javascript:alert(5)">click</a> <a href="https://ok.example/page">fine</a>
<form action="https://evil.example/steal"><input name="password"><button>Send</button></form>
<iframe src="https://evil.example/frame"></iframe><object data="https://evil.example/o"></object>
<svg onload="alert(6)"><circle r="1"/></svg>
</body></html>"""


def test_a_hostile_body_is_served_sanitized_under_its_own_strict_policy(client, case, mailbox):
    message = mail_case(
        case,
        mailbox,
        html=HOSTILE,
        attachments=(
            {"name": "logo.png", "content_type": "image/png", "is_inline": True,
             "content_id": "<logo@mail>", "content": b"\x89PNG fake"},
        ),
    )  # fmt: skip

    response = client.get(body_url(case, message))

    assert response.status_code == 200
    body = text_of(response)
    for hostile in (
        "alert(",
        "<script",
        "onload",
        "onclick",
        "onerror",
        "javascript:",
        "<form",
        "<iframe",
        "<object",
        "<svg",
        "evil.example",
        "tracker.example",
        "http-equiv",
    ):
        assert hostile not in body, hostile  # fmt: skip
    assert "Hello" in body
    assert 'href="https://ok.example/page"' in body
    assert 'target="_blank"' in body
    assert 'rel="noopener noreferrer"' in body
    logo = message.attachments.get()
    inline_url = case_url(
        case, "web:case-attachment-inline", message_id=message.pk, attachment_id=logo.pk
    )
    assert f'<img src="{inline_url}" alt="logo">' in body
    assert '<img alt="nothing">' in body
    assert '<img alt="pixel">' in body
    policy = response["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "frame-ancestors 'self'" in policy
    assert "img-src 'self' data:;" in policy + ";"
    assert "script-src" not in policy
    assert "http:" not in policy
    assert "allow-scripts" not in policy
    assert "allow-forms" not in policy
    assert response["X-Frame-Options"] == "SAMEORIGIN"
    assert response["Referrer-Policy"] == "no-referrer"


def test_remote_images_load_only_when_the_agent_asks(client, case, mailbox):
    message = mail_case(case, mailbox, html='<p>Hi</p><img src="https://cdn.example/photo.jpg">')

    page = text_of(client.get(case_url(case)))
    assert "Load images" in page
    assert 'data-images-src="' in page
    with_images = client.get(body_url(case, message, images="1"))

    assert '<img src="https://cdn.example/photo.jpg">' in text_of(with_images)
    assert "img-src 'self' data: https: http:" in with_images["Content-Security-Policy"]


def test_a_message_without_remote_images_offers_no_button(client, case, mailbox):
    mail_case(case, mailbox, html="<p>Just text</p>")
    assert "Load images" not in text_of(client.get(case_url(case)))


def test_a_message_of_another_case_is_not_served_through_this_one(client, case, team, mailbox):
    elsewhere = CaseFactory(team=team)
    message = mail_case(elsewhere, mailbox, html="<p>x</p>")
    assert client.get(body_url(case, message)).status_code == 404


# --- attachments -------------------------------------------------------------------------------


def attachment_url(case, message, attachment, *, inline: bool = False) -> str:
    name = "web:case-attachment-inline" if inline else "web:case-attachment"
    return case_url(case, name, message_id=message.pk, attachment_id=attachment.pk)


def test_attachments_download_as_attachments_never_sniffed(client, case, mailbox):
    message = mail_case(
        case,
        mailbox,
        attachments=(
            {"name": "evil\r\nname.html", "content_type": "text/html", "content": b"<script>x"},
        ),
    )
    attachment = message.attachments.get()

    page = text_of(client.get(case_url(case)))
    response = client.get(attachment_url(case, message, attachment))

    assert attachment_url(case, message, attachment) in page
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    assert "\n" not in response["Content-Disposition"]
    assert response["Content-Type"] == "application/octet-stream"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert "sandbox" in response["Content-Security-Policy"]
    assert b"".join(response.streaming_content) == b"<script>x"


def test_inline_images_are_inline_only_for_raster_types(client, case, mailbox):
    message = mail_case(
        case,
        mailbox,
        html="<p>x</p>",
        attachments=(
            {"name": "a.png", "content_type": "image/png", "is_inline": True,
             "content_id": "a", "content": b"png"},
            {"name": "b.svg", "content_type": "image/svg+xml", "is_inline": True,
             "content_id": "b", "content": b"<svg onload=alert(1)>"},
        ),
    )  # fmt: skip
    png, svg = message.attachments.order_by("name")

    shown = client.get(attachment_url(case, message, png, inline=True))
    forced = client.get(attachment_url(case, message, svg, inline=True))

    assert shown["Content-Type"] == "image/png"
    assert shown["Content-Disposition"].startswith("inline;")
    assert forced["Content-Disposition"].startswith("attachment;")
    assert forced["Content-Type"] == "application/octet-stream"


def test_an_attachment_whose_bytes_cannot_be_had_is_a_clear_error(client, case, mailbox):
    message = mail_case(case, mailbox, attachments=({"name": "lost.pdf"},))
    attachment = message.attachments.get()

    response = client.get(attachment_url(case, message, attachment))

    assert response.status_code == 502
    assert "This attachment&#x27;s content is not available." in text_of(response)


def test_an_attachment_is_reached_only_through_its_own_case(client, case, team, mailbox):
    elsewhere = CaseFactory(team=team)
    message = mail_case(elsewhere, mailbox, attachments=({"name": "a.txt", "content": b"a"},))
    attachment = message.attachments.get()
    url = case_url(case, "web:case-attachment", message_id=message.pk, attachment_id=attachment.pk)
    assert client.get(url).status_code == 404


# --- the sanitizer and the text renderer, on their own -----------------------------------------


def test_style_keeps_colours_and_drops_every_fetching_function():
    assert safe_style("color:red;width:10px") == "color:red;width:10px"
    assert safe_style("color:rgb(1, 2, 3)") == "color:rgb(1, 2, 3)"
    assert safe_style('background:url("http://x/")') == ""
    assert safe_style("background-image:image-set('http://x/a.png' 1x)") == ""
    assert safe_style("width:expression(alert(1))") == ""
    assert safe_style("background:u\\72l(http://x/)") == ""


def test_css_escapes_cannot_smuggle_a_url_past_the_sanitizer():
    html = sanitize_email_html('<p style="background: u\\72l(http://x.example/)">a</p>')
    assert "x.example" not in html
    assert "url" not in html


def test_data_urls_must_be_raster_images():
    html = sanitize_email_html(
        '<img src="data:image/png;base64,iVBORw0KGgo=">'
        '<img src="data:text/html;base64,PHNjcmlwdD4=">'
        '<a href="data:text/html,x">d</a>'
    )
    assert html == (
        '<img src="data:image/png;base64,iVBORw0KGgo="><img>'
        '<a target="_blank" rel="noopener noreferrer">d</a>'
    )


def test_gmail_quotes_fold_behind_show_quoted_text():
    html = sanitize_email_html(
        '<div>Thanks!</div><div class="gmail_quote"><div class="gmail_attr">On Mon, Anna wrote:'
        '</div><blockquote class="gmail_quote">old</blockquote></div>'
    )
    assert html.startswith('<div>Thanks!</div><details class="quoted"><summary>Show quoted')
    assert html.count("<details") == 1


def test_outlook_reply_headers_fold_everything_after_them():
    html = sanitize_email_html(
        '<div><p>Done, see attached.</p><div id="appendonsend"></div><hr>'
        '<div id="divRplyFwdMsg"><b>From:</b> Anna<br><b>Sent:</b> Monday</div>'
        "<div>old thread</div></div><p>old footer</p>"
    )
    visible, folded = html.split("<details", 1)
    assert "Done, see attached." in visible
    assert "old thread" in folded
    assert "old footer" in folded
    assert "From:" in folded


def test_an_outlook_word_reply_header_is_recognised_by_its_text():
    html = sanitize_email_html(
        '<div><p>Yes.</p><div style="border-top:solid #E1E1E1 1pt"><p><b>From:</b> Anna'
        "<br><b>Sent:</b> Monday<br><b>Subject:</b> Printer</p></div><p>quoted</p></div>"
    )
    visible, folded = html.split("<details", 1)
    assert "Yes." in visible
    assert "quoted" in folded


def test_a_forward_that_is_all_quote_stays_in_view():
    html = sanitize_email_html("<blockquote>everything</blockquote>")
    assert html == "<blockquote>everything</blockquote>"


def test_plain_text_quotes_fold_with_their_attribution():
    text = (
        "Sounds good.\n\nOn Mon, 5 Jan 2026 at 10:00, Anna Berg <anna@x.example>\n"
        "wrote:\n\n> old\n> older\n"
    )
    assert split_quoted_text(text) == (
        "Sounds good.",
        "On Mon, 5 Jan 2026 at 10:00, Anna Berg <anna@x.example>\nwrote:\n\n> old\n> older",
    )
    outlook = "Fine.\n-----Original Message-----\nFrom: Anna\nSent: Monday\n\nold"
    assert split_quoted_text(outlook)[0] == "Fine."
    assert split_quoted_text("> only a quote") == ("> only a quote", "")
    assert split_quoted_text("No quote here.") == ("No quote here.", "")


def test_plain_text_is_escaped_and_linkified():
    html = text_to_html("<b>hi</b> see https://x.example/?a=1&b=2")
    assert html.startswith('&lt;b&gt;hi&lt;/b&gt; see <a target="_blank"')
    assert 'href="https://x.example/?a=1&amp;b=2"' in html


def test_text_messages_fold_their_quote_in_the_page(client, case, mailbox):
    mail_case(case, mailbox, text="New words\n\nOn Mon, Anna wrote:\n> old words")

    page = text_of(client.get(case_url(case)))

    main_part = page.split("New words", 1)[1]
    assert re.search(r"<details class=\"quoted\"><summary>Show quoted text</summary>", main_part)
    assert "&gt; old words" in main_part


def test_outbound_messages_are_marked_as_ours(client, case, mailbox):
    mail_case(case, mailbox, direction=MessageDirection.OUTBOUND, sender=SUPPORT, text="Reply")
    page = text_of(client.get(case_url(case)))
    assert 'class="message outbound"' in page
    assert CaseMessage.objects.filter(case=case, direction="outbound").exists()
    assert TimelineEvent.objects.filter(case=case, kind="message_sent").exists()
