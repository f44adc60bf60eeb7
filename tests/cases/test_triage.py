"""Triage of new cases: email through intake gets priority, category, sentiment and a summary
from the built-in rules (edited in admin), a configured language model re-triages it after
commit (its failures keep the rules' result), and what agents change is theirs and recorded.

The language model is a local fake OpenAI-compatible server on a real socket.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cases import services
from cases.models import Case, Category, TimelineEvent, TriageOverride, TriageRule
from cases.services.triage import triage_rules_changed, triage_seed_defaults
from crm.celery import app
from mailsync.models import Message
from mailsync.services import mailbox_connect
from tests.cases.factories import make_agent

pytestmark = pytest.mark.django_db
SUPPORT = "help@crm.example"
_ids = itertools.count(1)

BILLING_EN = (
    "Hi team,\n\n"
    "your invoice 4711 charged our credit card twice. This is unacceptable, please refund "
    "the second payment today. We need the money back before the month closes.\n\n"
    "Best regards,\nAnna Berg\nNordwind GmbH\n\n"
    "On Mon, 3 Mar 2025 at 10:00, Support <help@crm.example> wrote:\n"
    "> Thank you for your order, it is great to have you.\n"
)
OUTAGE_DE = (
    "Hallo zusammen,\n\n"
    "seit heute Morgen ist unser Portal nicht erreichbar, die Störung betrifft alle "
    "Mitarbeiter. Wir sind wirklich verärgert. Bitte melden Sie sich sofort.\n\n"
    "Mit freundlichen Grüßen\nHans Müller\n"
)


@pytest.fixture(autouse=True)
def default_rules() -> Iterator[None]:
    """The seeded defaults (gone after another test's flush) and rules reloaded on both sides
    of the test: its rolled-back rows must not stay cached for the next one."""
    triage_seed_defaults()
    triage_rules_changed()
    yield
    triage_rules_changed()


@pytest.fixture
def mailbox(team):
    return mailbox_connect(address=SUPPORT, team=team, local=True)


@pytest.fixture
def as_admin(client):
    """The Django client signed in as an admin (role admin: a superuser)."""
    client.force_login(make_agent(role="admin"))
    return client


def deliver(mailbox, *, subject: str, body: str, sender: str = "anna@nordwind.example",
            in_reply_to: str = "") -> Case:  # fmt: skip
    """A message stored as the SMTP listener or Graph sync leaves it, through intake."""
    message = Message.objects.create(
        mailbox=mailbox,
        folder=mailbox.folders.get(well_known="inbox"),
        subject=subject,
        from_address=sender,
        from_name="Anna Berg",
        to=[{"name": "", "address": SUPPORT}],
        body_text=body,
        internet_message_id=f"<t{next(_ids)}@nordwind.example>",
        in_reply_to=in_reply_to,
        received_at=timezone.now(),
    )
    link = services.message_intake(message_id=message.pk)
    return Case.objects.get(pk=link.case_id)


def rule_ids(**where: object) -> list[int]:
    return list(TriageRule.objects.filter(**where).values_list("pk", flat=True))


# --- the built-in rules in intake -------------------------------------------------------------


def test_an_english_billing_complaint_is_triaged_by_the_rules(mailbox):
    case = deliver(mailbox, subject="URGENT: charged twice", body=BILLING_EN)

    assert (case.priority, case.category.name, case.sentiment) == ("urgent", "Billing", "negative")
    assert case.summary == (
        "your invoice 4711 charged our credit card twice. This is unacceptable, please refund "
        "the second payment today. We need the money back before the month closes."
    )
    fields = case.triage["fields"]
    assert case.triage["source"] == "rules"
    assert set(fields["priority"]["rules"]) == set(
        rule_ids(field="priority", value="urgent", weight__gt=0)
    )  # the urgency keywords and the subject's urgency word
    assert fields["category"] == {
        "value": "Billing",
        "id": case.category_id,
        "source": "rules",
        "rules": rule_ids(category__name="Billing"),
    }
    assert "llm" not in case.triage  # no model configured


def test_a_german_outage_report_is_triaged_by_the_rules(mailbox):
    case = deliver(mailbox, subject="Portal nicht erreichbar", body=OUTAGE_DE)

    assert (case.priority, case.category.name, case.sentiment) == ("urgent", "Incident", "negative")
    assert case.summary.startswith("seit heute Morgen ist unser Portal nicht erreichbar")
    assert "Hans Müller" not in case.summary  # the signature is not the customer's request


@pytest.mark.parametrize(
    ("subject", "body", "expected"),
    [
        ("Export question",
         "Hello,\n\ncould you tell me how to export my contacts? No rush.\n\n"
         "Thanks in advance,\nBo",
         ("low", None, "neutral")),
        ("Danke!",
         "Hallo,\n\nvielen Dank für die schnelle Hilfe gestern, jetzt klappt alles prima."
         "\n\nLG\nBo",
         ("normal", None, "positive")),
        ("Kündigung", "Sehr geehrte Damen und Herren,\n\nhiermit kündige ich meinen Vertrag.",
         ("normal", "Cancellation", "neutral")),
    ],
)  # fmt: skip
def test_quiet_messages_get_quiet_values(mailbox, subject, body, expected):
    case = deliver(mailbox, subject=subject, body=body)

    category = case.category.name if case.category else None
    assert (case.priority, category, case.sentiment) == expected
    assert case.summary


def test_only_new_cases_are_triaged_and_the_rules_are_not_read_per_message(mailbox, team):
    first = deliver(mailbox, subject="Question", body="How do I export my contacts?")
    triage_before = first.triage

    with CaptureQueriesContext(connection) as queries:
        reply = deliver(mailbox, subject="URGENT!!", body="This is unacceptable, I am angry.",
                        in_reply_to=first.messages.get().message.internet_message_id)  # fmt: skip
        other = deliver(mailbox, subject="Refund", body="Please refund invoice 7.",
                        sender="bo@example.org")  # fmt: skip

    assert reply.pk == first.pk
    assert (reply.priority, reply.sentiment, reply.triage) == ("normal", "neutral", triage_before)
    assert other.category.name == "Billing"
    tables = ("cases_triagerule", "cases_category")
    assert not [q["sql"] for q in queries if any(t in q["sql"] for t in tables)]


def test_a_summary_leaves_out_greeting_quotes_and_signature_and_is_bounded(mailbox):
    body = ("Dear support,\n\n" + "The export stops at row 5000 and the file is cut. " * 30
            + "\n--\nAnna\n\n-----Original Message-----\nFrom: x")  # fmt: skip

    case = deliver(mailbox, subject="Export", body=body)

    assert case.summary.startswith("The export stops at row 5000")
    assert len(case.summary) <= 400
    assert "\n" not in case.summary
    assert "Original Message" not in case.summary


# --- rules edited in admin -----------------------------------------------------------------------


def rule_form(**changes: object) -> dict:
    form = {"field": "category", "match_type": "keywords", "pattern": "toner*, drucker*",
            "where": "both", "value": "", "category": "", "weight": "2", "order": "5",
            "active": "on", "note": ""}  # fmt: skip
    form.update({key: str(value) for key, value in changes.items()})
    return form


def test_rules_added_and_changed_in_admin_change_the_next_classification(as_admin, mailbox):
    before = deliver(mailbox, subject="URGENT: Toner leer", body="Der Toner ist leer.")
    assert (before.priority, before.category) == ("urgent", None)

    added = as_admin.post("/admin/cases/category/add/", {"name": "Printing", "active": "on"})
    printing = Category.objects.get(name="Printing")
    rule = as_admin.post(
        "/admin/cases/triagerule/add/", rule_form(category=printing.pk)
    )  # a new category rule
    urgency = TriageRule.objects.get(field="priority", match_type="keywords", value="urgent")
    changed = as_admin.post(
        f"/admin/cases/triagerule/{urgency.pk}/change/",
        rule_form(field="priority", pattern=urgency.pattern, value="high", weight=5, order=10),
    )  # the urgency words now only mean high
    subject_rule = TriageRule.objects.get(field="priority", match_type="regex")
    off = as_admin.post(
        "/admin/cases/triagerule/",
        {"action": "deactivate", "_selected_action": [subject_rule.pk]},
    )

    assert [r.status_code for r in (added, rule, changed, off)] == [302, 302, 302, 302]
    after = deliver(mailbox, subject="URGENT: Toner leer", body="Der Toner ist leer.",
                    sender="bo@example.org")  # fmt: skip
    assert (after.priority, after.category) == ("high", printing)


def test_a_sender_domain_rule_matches_the_domain_and_its_subdomains(as_admin, mailbox):
    form = rule_form(field="priority", value="high", where="sender_domain", weight=9,
                     pattern="BigCustomer.example")  # fmt: skip

    assert as_admin.post("/admin/cases/triagerule/add/", form).status_code == 302
    exact = deliver(mailbox, subject="Hi", body="A question.", sender="ceo@bigcustomer.example")
    sub = deliver(mailbox, subject="Hi", body="A question.", sender="it@eu.bigcustomer.example")
    other = deliver(mailbox, subject="Hi", body="A question.", sender="x@notbigcustomer.example")

    assert [exact.priority, sub.priority, other.priority] == ["high", "high", "normal"]


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"field": "category", "value": ""}, "category", "Choose the category"),
        ({"match_type": "regex", "pattern": "(unclosed"}, "pattern", "Not a valid regular"),
        ({"match_type": "regex", "pattern": "x*"}, "pattern", "matches empty text"),
        ({"pattern": " , ;\n"}, "pattern", "at least one keyword"),
        ({"pattern": "to*ner"}, "pattern", "may only end a keyword"),
        ({"pattern": "a*"}, "pattern", "at least 3 letters"),
        ({"field": "priority", "value": ""}, "value", "one of: low, normal, high, urgent"),
        ({"field": "sentiment", "value": "low"}, "value", "one of: positive, neutral, negative"),
        ({"weight": 0}, "weight", "between 1 and 100"),
        ({"where": "sender_domain", "pattern": "not a domain"}, "pattern", "is not a domain"),
        ({"where": "sender_domain", "match_type": "phrase"}, "match_type", "sender's domain"),
    ],
)
def test_invalid_rules_get_form_errors(as_admin, changes, field, message):
    count = TriageRule.objects.count()

    form = rule_form(field="priority", value="high")  # valid, but for what the case changes
    form.update({key: str(value) for key, value in changes.items()})

    response = as_admin.post("/admin/cases/triagerule/add/", form)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field])
    assert TriageRule.objects.count() == count


def test_a_category_rule_needs_no_value_and_a_value_rule_no_category(as_admin):
    billing = Category.objects.get(name="Billing")

    response = as_admin.post(
        "/admin/cases/triagerule/add/", rule_form(field="priority", value="high",
                                                  category=billing.pk)
    )  # fmt: skip

    assert "Only category rules" in " ".join(response.context["adminform"].form.errors["category"])


# --- overrides ------------------------------------------------------------------------------------


def test_an_agents_change_is_recorded_as_an_override_with_its_rules(mailbox, api, agent,
                                                                    as_admin):  # fmt: skip
    case = deliver(mailbox, subject="URGENT: charged twice", body=BILLING_EN)
    account = Category.objects.get(name="Account")
    urgent_rules = case.triage["fields"]["priority"]["rules"]

    first = api.patch(f"/api/v1/cases/{case.pk}",
                      {"priority": "normal", "category": account.pk}, format="json")  # fmt: skip
    again = api.patch(f"/api/v1/cases/{case.pk}", {"priority": "low"}, format="json")

    assert (first.status_code, again.status_code) == (200, 200)
    overrides = {o.field: o for o in TriageOverride.objects.filter(case=case)}
    assert set(overrides) == {"priority", "category"}  # the second change was the agent's own
    priority = overrides["priority"]
    assert (priority.suggested, priority.chosen, priority.agent, priority.source) == (
        "urgent",
        "normal",
        agent,
        "rules",
    )
    assert sorted(priority.rules.values_list("pk", flat=True)) == sorted(urgent_rules)
    assert (overrides["category"].suggested, overrides["category"].chosen) == ("Billing", "Account")
    assert sorted(api.get(f"/api/v1/cases/{case.pk}").json()["triage"]["overridden"]) == [
        "category",
        "priority",
    ]

    by_rule = as_admin.get(f"/admin/cases/triageoverride/?rules__id__exact={urgent_rules[0]}")
    pair = json.dumps(["priority", "urgent", "normal"])
    by_pair = as_admin.get("/admin/cases/triageoverride/", {"pair": pair})
    rules_page = as_admin.get("/admin/cases/triagerule/?field__exact=priority")
    assert case.number in by_rule.content.decode()
    assert list(by_pair.context["cl"].result_list) == [priority]
    counted = {rule.pk: rule.override_count for rule in rules_page.context["cl"].result_list}
    assert all(counted[pk] == 1 for pk in urgent_rules)
    assert as_admin.get(f"/admin/cases/triageoverride/{priority.pk}/change/").status_code == 200
    assert as_admin.post(f"/admin/cases/triageoverride/{priority.pk}/delete/").status_code == 403


# --- the API --------------------------------------------------------------------------------------


def test_the_api_shows_triage_and_sets_category_and_summary(mailbox, api):
    case = deliver(mailbox, subject="Portal nicht erreichbar", body=OUTAGE_DE)

    shown = api.get(f"/api/v1/cases/{case.pk}").json()
    changed = api.patch(f"/api/v1/cases/{case.pk}",
                        {"summary": "Portal down for everyone.", "category": None},
                        format="json")  # fmt: skip

    assert shown["category_summary"] == {"id": case.category_id, "name": "Incident"}
    assert (shown["sentiment"], shown["priority"]) == ("negative", "urgent")
    assert shown["summary"] == case.summary
    assert shown["triage"]["source"] == "rules"
    assert shown["triage"]["suggestion"]["category"]["value"] == "Incident"
    assert changed.status_code == 200
    assert (changed.json()["summary"], changed.json()["category"]) == (
        "Portal down for everyone.",
        None,
    )
    assert TriageOverride.objects.get(case=case).field == "category"  # summaries are not rules'


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"category": 999_999}, "category"),
        ({"category": "Billing"}, "category"),
        ({"summary": "x" * 2001}, "summary"),
        ({"sentiment": "furious"}, "sentiment"),
    ],
)
def test_bad_triage_values_are_400_in_drfs_shape(mailbox, api, body, field):
    case = deliver(mailbox, subject="Question", body="How do I export?")

    response = api.patch(f"/api/v1/cases/{case.pk}", body, format="json")

    assert response.status_code == 400
    assert list(response.json()) == [field]
    assert not TriageOverride.objects.exists()


def test_an_inactive_category_cannot_be_set(mailbox, api):
    case = deliver(mailbox, subject="Question", body="How do I export?")
    retired = Category.objects.create(name="Retired", active=False)

    response = api.patch(f"/api/v1/cases/{case.pk}", {"category": retired.pk}, format="json")

    assert response.status_code == 400
    assert "category" in response.json()


# --- the language model ---------------------------------------------------------------------------


@dataclass
class FakeModel:
    """An OpenAI-compatible /chat/completions that answers what the test says."""

    url: str
    status: int = 200
    content: str = ""
    raw_body: str | None = None  # instead of a chat completion
    hold: threading.Event | None = None  # answer only once this is set
    requests: list[dict] = field(default_factory=list)

    def answer(self, **values: object) -> None:
        self.content = json.dumps(values)


@pytest.fixture
def fake_model(settings) -> Iterator[FakeModel]:
    state: dict[str, FakeModel] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's name
            model = state["model"]
            length = int(self.headers.get("Content-Length", 0))
            model.requests.append({
                "path": self.path,
                "authorization": self.headers.get("Authorization"),
                "json": json.loads(self.rfile.read(length)),
            })  # fmt: skip
            if model.hold is not None:
                model.hold.wait(timeout=30)
            body = model.raw_body
            if body is None:
                message = {"role": "assistant", "content": model.content}
                body = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "model": "triage-test",
                    "choices": [{"index": 0, "finish_reason": "stop", "message": message}],
                })  # fmt: skip
            data = body.encode()
            try:
                self.send_response(model.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            except OSError:  # the client gave up waiting
                pass

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    model = FakeModel(url=f"http://127.0.0.1:{server.server_address[1]}/v1")
    state["model"] = model
    settings.TRIAGE_LLM_URL = model.url
    settings.TRIAGE_LLM_MODEL = "triage-test"
    settings.TRIAGE_LLM_API_KEY = "sk-test-key"
    settings.TRIAGE_LLM_TIMEOUT_SECONDS = 5
    yield model
    if model.hold is not None:
        model.hold.set()
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def deliver_and_run_tasks(mailbox, django_capture_on_commit_callbacks, **message) -> Case:
    """Intake as the worker runs it: the tasks it queued after commit run at once here."""
    with django_capture_on_commit_callbacks(execute=True):
        case = deliver(mailbox, **message)
    case.refresh_from_db()
    return case


def test_the_model_retriages_a_new_case_after_commit(
    mailbox, fake_model, eager_celery, django_capture_on_commit_callbacks
):
    fake_model.answer(priority="high", category="billing", sentiment="negative",
                      summary="  Customer was charged twice\nand wants a refund. ")  # fmt: skip

    case = deliver_and_run_tasks(mailbox, django_capture_on_commit_callbacks,
                                 subject="Charged twice", body=BILLING_EN)  # fmt: skip

    assert (case.priority, case.category.name, case.sentiment) == ("high", "Billing", "negative")
    assert case.summary == "Customer was charged twice and wants a refund."
    assert case.triage["source"] == "llm"
    assert case.triage["llm"]["status"] == "applied"
    assert case.triage["builtin"]["priority"] == "normal"  # the rules' result is kept
    assert case.triage["fields"]["category"]["rules"] == rule_ids(category__name="Billing")
    [request] = fake_model.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["authorization"] == "Bearer sk-test-key"
    assert request["json"]["model"] == "triage-test"
    system, user = request["json"]["messages"]
    assert '"Billing"' in system["content"]
    assert '"urgent"' in system["content"]
    assert "charged our credit card twice" in user["content"]
    assert "Thank you for your order" not in user["content"]  # the quote is not sent
    event = TimelineEvent.objects.filter(case=case, data__field="triage").get()
    assert event.summary == "Triage (model triage-test): priority normal → high; summary written"

    again = services.triage.triage_with_llm(case_id=case.pk)
    assert (again, len(fake_model.requests)) == ("done", 1)


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        (lambda m: setattr(m, "hold", threading.Event()), "no answer within 0.5 s"),
        (lambda m: setattr(m, "status", 500), "HTTP 500"),
        (lambda m: setattr(m, "content", '{"priority": "high", "category": '), "not JSON"),
        (lambda m: setattr(m, "raw_body", "<html>gateway</html>"), "not a chat completion"),
        (lambda m: m.answer(priority="critical", category=None, sentiment="negative",
                            summary="x"), "priority 'critical'"),
        (lambda m: m.answer(priority="high", category="Astrology", sentiment="negative",
                            summary="x"), "category 'Astrology'"),
        (lambda m: m.answer(priority="high", category=None, sentiment="unknown",
                            summary="x"), "sentiment 'unknown'"),
        (lambda m: m.answer(priority="high", category=None, sentiment="negative"),
         "lacks summary"),
        (lambda m: m.answer(priority="high", category=None, sentiment="negative",
                            summary=" "), "summary is empty"),
    ],
    ids=["timeout", "http-500", "malformed-json", "not-a-completion", "priority-out-of-range",
         "unknown-category", "sentiment-out-of-range", "missing-key", "empty-summary"],
)  # fmt: skip
def test_a_failing_model_keeps_the_rules_result_and_says_why(
    mailbox, fake_model, eager_celery, django_capture_on_commit_callbacks, settings, setup, error
):
    settings.TRIAGE_LLM_TIMEOUT_SECONDS = 0.5
    setup(fake_model)

    case = deliver_and_run_tasks(mailbox, django_capture_on_commit_callbacks,
                                 subject="Portal nicht erreichbar", body=OUTAGE_DE)  # fmt: skip

    assert (case.priority, case.category.name, case.sentiment) == ("urgent", "Incident", "negative")
    assert case.summary.startswith("seit heute Morgen")
    assert case.triage["source"] == "rules"
    llm = case.triage["llm"]
    assert (llm["status"], llm["model"], llm["kept"]) == ("failed", "triage-test", "rules")
    assert error in llm["error"]
    assert not TimelineEvent.objects.filter(case=case, data__field="triage").exists()


def test_the_model_never_overwrites_what_an_agent_changed(
    mailbox, fake_model, eager_celery, django_capture_on_commit_callbacks, api
):
    fake_model.answer(priority="urgent", category="Incident", sentiment="negative",
                      summary="Portal is down.")  # fmt: skip
    with django_capture_on_commit_callbacks() as queued:
        case = deliver(mailbox, subject="Portal nicht erreichbar", body=OUTAGE_DE)
    assert case.triage["llm"]["status"] == "pending"

    # The agent is quicker than the model.
    api.patch(f"/api/v1/cases/{case.pk}",
              {"priority": "low", "summary": "Agent's summary."}, format="json")  # fmt: skip
    for callback in queued:
        if "triage" in callback.__qualname__:
            callback()  # the model's task, as the worker runs it after the commit

    case.refresh_from_db()
    assert (case.priority, case.summary) == ("low", "Agent's summary.")
    assert (case.category.name, case.sentiment) == ("Incident", "negative")
    assert case.triage["fields"]["category"]["source"] == "llm"
    assert case.triage["fields"]["priority"]["source"] == "rules"
    assert case.triage["llm"]["status"] == "applied"
    override = TriageOverride.objects.get(case=case)
    assert (override.field, override.suggested, override.chosen) == ("priority", "urgent", "low")
    assert len(fake_model.requests) == 1


def test_without_a_model_url_nothing_is_queued(
    mailbox, settings, django_capture_on_commit_callbacks
):
    settings.TRIAGE_LLM_URL = ""

    with django_capture_on_commit_callbacks() as queued:
        case = deliver(mailbox, subject="Refund", body="Please refund invoice 7.")

    assert not [c for c in queued if "triage" in getattr(c, "__qualname__", "")]
    assert "llm" not in case.triage


@pytest.mark.django_db(transaction=True)
def test_a_real_worker_on_redis_runs_the_models_triage_after_intake_commits(mailbox, fake_model):
    fake_model.answer(priority="high", category="Account", sentiment="neutral",
                      summary="Cannot sign in since the password reset.")  # fmt: skip

    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        case = deliver(mailbox, subject="Login", body="I cannot sign in since the reset.")
        assert case.triage["llm"]["status"] == "pending"  # intake did not wait for the model
        deadline = time.monotonic() + 30
        while Case.objects.get(pk=case.pk).triage["llm"]["status"] == "pending":
            assert time.monotonic() < deadline, "the worker never ran the model's triage"
            time.sleep(0.1)

    case.refresh_from_db()
    assert (case.priority, case.category.name, case.triage["llm"]["status"]) == (
        "high",
        "Account",
        "applied",
    )
