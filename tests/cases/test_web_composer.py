"""The composer on the case page (cases/web/composer.py) through Django's test client: drafts
kept per agent, replies, forwards and notes sent through a real SMTP relay (aiosmtpd on
loopback), canned responses, and bad input answered with a sentence, never a 500."""

from __future__ import annotations

import email
import email.policy

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from cases.choices import MessageDirection
from cases.models import CannedResponse, CaseMessage, ReplyDraft
from crm.models import AgentProfile
from mailsync.models import OutboundMessage
from tests.cases import test_replies
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent
from tests.cases.test_replies import CUSTOMER, LOCAL, customer_writes

# The real SMTP relay (aiosmtpd with STARTTLS and AUTH) and the local mailbox of the API's
# reply tests, shared as fixtures.
relay = test_replies.relay
local_mailbox = test_replies.local_mailbox

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("eager_celery")]

HTMX = {"HTTP_HX_REQUEST": "true"}


def url(case, tail: str = "") -> str:
    return f"/cases/{case.number}/composer{tail}"


def received(relay_handler):
    [(mail_from, rcpt_tos, raw)] = relay_handler.received
    return mail_from, rcpt_tos, email.message_from_bytes(raw, policy=email.policy.default)


# --- drafts ------------------------------------------------------------------------------------


def test_a_draft_is_kept_per_agent_and_comes_back_in_the_composer(web, agent, team):
    case = CaseFactory(team=team, customer=CustomerFactory(emails=["anna@nordwind.example"]))
    colleague = make_agent(team=team)

    saved = web.post(url(case, "/draft"), {"mode": "reply", "body": "Hello <Anna>", "to": ""})

    assert saved.status_code == 204
    draft = ReplyDraft.objects.get()
    assert (draft.agent, draft.case, draft.body) == (agent, case, "Hello <Anna>")
    page = web.get(url(case))
    assert page.status_code == 200
    assert "Hello &lt;Anna&gt;</textarea>" in page.content.decode()
    assert 'value="anna@nordwind.example"' in page.content.decode()  # the default To
    assert "data-restored" in page.content.decode()

    other = Client()
    other.force_login(colleague)
    assert "Hello &lt;Anna&gt;" not in other.get(url(case)).content.decode()

    web.post(url(case, "/draft"), {"mode": "note", "body": "Second thoughts"})
    assert ReplyDraft.objects.get().mode == "note"  # still one per agent and case

    assert web.post(url(case, "/draft/discard"), **HTMX).status_code == 204
    assert not ReplyDraft.objects.exists()
    assert "data-restored" not in web.get(url(case)).content.decode()


def test_an_emptied_composer_leaves_no_draft(web, team):
    case = CaseFactory(team=team)
    web.post(url(case, "/draft"), {"mode": "reply", "body": "x"})
    web.post(url(case, "/draft"), {"mode": "reply", "body": "  "})
    assert not ReplyDraft.objects.exists()


def test_bad_draft_input_is_a_400_with_a_sentence(web, team):
    case = CaseFactory(team=team)
    bad_mode = web.post(url(case, "/draft"), {"mode": "shout", "body": "x"})
    assert bad_mode.status_code == 400
    assert "is not a way to answer" in bad_mode.content.decode()
    assert web.post(url(case, "/draft"), {"body": "x", "message": "abc"}).status_code == 400
    assert web.post(url(case, "/draft"), {"body": "x", "message": "99999"}).status_code == 400
    assert web.post(url(case, "/draft"), {"body": "x", "to": "a" * 3000}).status_code == 400
    assert web.get(url(case, "/draft")).status_code == 405
    assert not ReplyDraft.objects.exists()


def test_a_case_the_agent_cannot_see_is_a_404_everywhere(web):
    hidden = CaseFactory(team=TeamFactory(name="Elsewhere"))
    for response in (
        web.get(url(hidden)),
        web.post(url(hidden, "/draft"), {"body": "x"}),
        web.post(url(hidden, "/draft/discard")),
        web.post(url(hidden, "/send"), {"mode": "note", "body": "x"}),
        web.get(url(hidden, "/macros/1")),
    ):
        assert response.status_code == 404
    assert not ReplyDraft.objects.exists()
    assert not hidden.notes.exists()


def test_signed_out_visitors_are_sent_to_sign_in(team):
    case = CaseFactory(team=team)
    response = Client().post(url(case, "/draft"), {"body": "x"})
    assert response.status_code == 302
    assert "/accounts/login/" in response["Location"]


# --- sending -----------------------------------------------------------------------------------


def test_a_reply_goes_through_the_relay_threaded_and_the_draft_is_gone(
    web, agent, local_mailbox, relay, django_capture_on_commit_callbacks
):
    AgentProfile.objects.filter(user=agent).update(signature="Dana\nBilling team")
    case = customer_writes(local_mailbox)
    web.post(url(case, "/draft"), {"mode": "reply", "body": "Hello Anna"})

    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(
            url(case, "/send"),
            {"mode": "reply", "body": "Hello Anna,\n\n<b>try</b> a new cartridge.",
             "to": CUSTOMER, "signature": "1"},
            **HTMX,
        )  # fmt: skip

    assert response.status_code == 200, response.content
    page = response.content.decode()
    assert f"Sent to {CUSTOMER}." in page
    assert 'data-replace="section.thread"' in page
    assert 'Conversation <span class="muted count">2</span>' in page
    mail_from, rcpt_tos, sent = received(relay)
    assert (mail_from, rcpt_tos) == (LOCAL, [CUSTOMER])
    opening = CaseMessage.objects.get(case=case, direction=MessageDirection.INBOUND).message
    assert sent["Subject"] == f"Re: Printer on fire [{case.number}]"
    assert sent["In-Reply-To"] == opening.internet_message_id
    assert opening.internet_message_id in sent["References"]
    html = sent.get_body(("html",)).get_content()
    assert "&lt;b&gt;try&lt;/b&gt;" in html  # typed text is escaped, not markup
    assert "Billing team" in html
    assert not ReplyDraft.objects.exists()


def test_reply_all_and_no_signature(web, local_mailbox, relay, django_capture_on_commit_callbacks):
    case = customer_writes(local_mailbox, Cc="boss@nordwind.example")
    form = web.get(url(case)).content.decode()
    assert 'data-reply_all-cc="boss@nordwind.example"' in form

    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(
            url(case, "/send"),
            {"mode": "reply_all", "body": "Both of you", "to": CUSTOMER,
             "cc": "boss@nordwind.example"},
            **HTMX,
        )  # fmt: skip

    assert response.status_code == 200, response.content
    _, rcpt_tos, sent = received(relay)
    assert sorted(rcpt_tos) == sorted(["boss@nordwind.example", CUSTOMER])
    assert sent["Cc"] == "boss@nordwind.example"
    assert "-- " not in sent.get_body(("plain",)).get_content()


def test_a_forward_carries_its_files(web, local_mailbox, relay, django_capture_on_commit_callbacks):
    case = customer_writes(local_mailbox)
    files = [
        SimpleUploadedFile("report.pdf", b"%PDF-1.4 tiny", content_type="application/pdf"),
        SimpleUploadedFile("notes.txt", b"hello", content_type="text/plain"),
    ]

    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(
            url(case, "/send"),
            {"mode": "forward", "body": "", "to": "Vendor <vendor@printers.example>",
             "attachments": files},
            **HTMX,
        )  # fmt: skip

    assert response.status_code == 200, response.content
    assert "Forwarded to vendor@printers.example." in response.content.decode()
    _, rcpt_tos, sent = received(relay)
    assert rcpt_tos == ["vendor@printers.example"]
    assert sent["Subject"] == f"Fw: Printer on fire [{case.number}]"
    attached = {part.get_filename(): part.get_content() for part in sent.iter_attachments()}
    assert attached["report.pdf"] == b"%PDF-1.4 tiny"
    assert set(attached) == {"report.pdf", "notes.txt"}


def test_attachments_over_the_limit_are_refused_and_nothing_is_sent(
    web, local_mailbox, relay, settings
):
    settings.MAIL_SEND_MAX_BYTES = 10
    case = customer_writes(local_mailbox)
    web.post(url(case, "/draft"), {"mode": "reply", "body": "see attached"})

    response = web.post(
        url(case, "/send"),
        {
            "mode": "reply",
            "body": "see attached",
            "attachments": SimpleUploadedFile("b", b"x" * 11),
        },
        **HTMX,
    )

    assert response.status_code == 422
    assert "Attachments may add up to 1 MB" in response.content.decode()
    assert 'role="alert"' in response.content.decode()
    assert not OutboundMessage.objects.exists()
    assert ReplyDraft.objects.exists()  # a refusal keeps the draft


def test_an_internal_note_with_a_mention(web, agent, team):
    case = CaseFactory(team=team)
    robin = make_agent(team=team, email="robin@support.example", first_name="Robin")

    response = web.post(url(case, "/send"), {"mode": "note", "body": "Over to you, @robin"}, **HTMX)

    assert response.status_code == 200, response.content
    assert "Note added." in response.content.decode()
    note = case.notes.get()
    assert (note.author, note.body) == (agent, "Over to you, @robin")
    assert list(note.mentions.all()) == [robin]
    assert "Over to you, @robin" in response.content.decode()  # the new note list


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"mode": "reply", "body": "  "}, "Write something to send."),
        ({"mode": "note", "body": ""}, "A note cannot be empty."),
        ({"mode": "forward", "body": "fyi"}, "A forward needs at least one recipient"),
        ({"mode": "forward", "body": "x", "to": "not an address"}, "is not an email address"),
        ({"mode": "reply", "body": "x", "cc": "a@b.example; nope"}, "Cc: “nope”"),
        ({"mode": "shout", "body": "x"}, "is not a way to answer"),
        ({"mode": "reply", "body": "x", "message": "12345678"}, "not part of this case"),
        ({"mode": "reply", "body": "x", "macro": "x", "apply_macro": "1"}, "cannot be used"),
    ],
)
def test_bad_input_is_a_422_with_the_reason(web, local_mailbox, relay, form, message):
    case = customer_writes(local_mailbox)
    response = web.post(url(case, "/send"), form, **HTMX)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not relay.received


def test_a_refusal_of_the_service_is_a_form_error(web, team):
    # A case opened by hand, with no customer and no team mailbox: nobody to send it to.
    case = CaseFactory(team=team)
    response = web.post(url(case, "/send"), {"mode": "reply", "body": "hello"}, **HTMX)
    assert response.status_code == 422
    assert "has no mailbox to send from" in response.content.decode()


def test_a_plain_form_post_redirects_with_the_outcome(web, team):
    case = CaseFactory(team=team)
    response = web.post(url(case, "/send"), {"mode": "note", "body": "plain"}, follow=True)
    assert response.redirect_chain[-1][0] == f"/cases/{case.number}/"
    assert "Note added." in response.content.decode()
    refused = web.post(url(case, "/send"), {"mode": "note", "body": ""}, follow=True)
    assert "A note cannot be empty." in refused.content.decode()


# --- canned responses --------------------------------------------------------------------------


def test_a_canned_response_is_rendered_for_the_case_and_applied_only_when_asked(
    web, agent, local_mailbox, relay, team, django_capture_on_commit_callbacks
):
    case = customer_writes(local_mailbox)
    macro = CannedResponse.objects.create(
        name="Cartridge",
        team=team,
        body="Hello {{ customer.first_name }},\n\nabout {{ case.number }}: {{ case.title }}.",
        set_status="awaiting_customer",
        add_tags=["hardware"],
    )
    other_team = CannedResponse.objects.create(
        name="Theirs", team=TeamFactory(name="Other"), body="x"
    )
    form = web.get(url(case)).content.decode()
    assert "Cartridge" in form
    assert "set status to Awaiting customer; add tags hardware" in form
    assert "Theirs" not in form

    rendered = web.get(url(case, f"/macros/{macro.pk}")).json()
    assert rendered["text"] == f"Hello Anna,\n\nabout {case.number}: Printer on fire."
    assert web.get(url(case, f"/macros/{other_team.pk}")).status_code == 404
    case.refresh_from_db()
    assert case.status == "new"  # rendering changes nothing

    with django_capture_on_commit_callbacks(execute=True):
        web.post(url(case, "/send"), {"mode": "reply", "body": rendered["text"],
                                      "macro": macro.pk}, **HTMX)  # fmt: skip
    case.refresh_from_db()
    assert case.status != "awaiting_customer"  # inserted, not applied

    with django_capture_on_commit_callbacks(execute=True):
        response = web.post(url(case, "/send"), {"mode": "reply", "body": "again",
                                                 "macro": macro.pk, "apply_macro": "1"},
                            **HTMX)  # fmt: skip
    assert response.status_code == 200
    case.refresh_from_db()
    assert case.status == "awaiting_customer"
    assert list(case.tags.values_list("name", flat=True)) == ["hardware"]


def test_a_canned_response_that_fails_to_render_is_a_422(web, team):
    case = CaseFactory(team=team)
    # Saved past validation (the admin refuses it): a template that does not parse.
    macro = CannedResponse.objects.create(name="Broken", body="{% for %}")
    response = web.get(url(case, f"/macros/{macro.pk}"))
    assert response.status_code == 422
    assert "does not parse" in response.json()["error"]
