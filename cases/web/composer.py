"""The composer on the case (issue 13): reply, reply all, forward and internal notes, with
drafts saved as the agent types.

Endpoints (all under `cases/<number>/composer`, a case the agent cannot see is a 404):

- `GET  composer`: the composer form, with the agent's draft put back. The case page loads
  it once it is shown (`hx-trigger="load"`), which keeps the page's own view untouched.
- `POST composer/draft`: keep what the agent is writing (`cases.services.drafts`); answers
  204, or 400 with a sentence for input that cannot be kept. `composer/draft/discard`
  deletes it (204).
- `GET  composer/macros/<id>`: a canned response rendered for this case as plain text for
  the editor, JSON `{"text", "subject", "name"}`; nothing is applied.
- `POST composer/send`: multipart (the files ride with the form). The answer is the new
  conversation, timeline, notes, tasks and header for the page to put in place, and a fresh
  composer; a refusal is a 422 with the reason for the composer's error slot, and the draft
  stays. A plain form post gets a redirect to the case with the outcome flashed.

Choices:

- The editor is a textarea: plain text becomes escaped HTML paragraphs on send (Django's
  `linebreaks`); a note keeps its text as typed, so `@name` mentions work as in the notes
  form. Canned responses are rendered to HTML by their sandbox and turned back into text for
  the editor, so the agent edits exactly what will be sent.
- "Insert" only renders a canned response. Its actions (set status, add tags) are applied on
  send, and only when the agent ticks "also apply its actions": inserting a text to read is
  not yet answering the customer. They run after the mail is out (a sent mail cannot be
  taken back); a refused action is reported next to the success, and nothing else changes.
- Undo is the browser's: Send starts a countdown and the form is posted only when it ends, so
  nothing has left the server that would need recalling. The draft is saved when the
  countdown starts; an agent who navigates away inside the window finds the reply as a draft
  (not sent) when they come back.
- Recipients are shown and editable for every mail mode, prefilled for reply and reply all
  with whom the answer goes to by default (the message's Reply-To or sender; for reply all
  also its other To and Cc, without our own addresses), as `mailsync` would choose them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.utils import parseaddr

from django.conf import settings
from django.contrib import messages as flash
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db.models import QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import path, reverse
from django.utils.html import linebreaks
from django.views.decorators.http import require_GET, require_POST

from cases import selectors, services
from cases.models import CannedResponse, Case, CaseMessage, ReplyDraft
from cases.services.drafts import draft_discard, draft_get, draft_save
from cases.services.intake import is_own_address
from cases.services.macros import macro_render_subject, signature_html
from cases.services.replies import latest_inbound
from cases.web import workspace
from crm.errors import ServiceError
from crm.models import User
from mailsync.models import Message
from mailsync.services import OutgoingFile
from mailsync.services.relay import html_to_text

MAIL_MODES = ("reply", "reply_all", "forward")
MODES = (*MAIL_MODES, "note")
MODE_LABELS = {"reply": "Reply", "reply_all": "Reply all", "forward": "Forward", "note": "Note"}
UNDO_SECONDS = 5
MAX_FILES = 20
MAX_RECIPIENTS = 100
ADDRESS_SEPARATORS = re.compile(r"[,;\n]+")
REFUSALS = (ServiceError, ValidationError)


class ComposerRefused(ServiceError):
    """What the agent wrote cannot be sent as it is (checked before any service is asked)."""

    code = "composer_invalid"


def _refusal_text(error: ServiceError | ValidationError) -> str:
    if isinstance(error, ServiceError):
        return error.message
    return " ".join(error.messages)


# --- whom an answer goes to --------------------------------------------------------------------


def _unique(addresses: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for address in addresses:
        address = (address or "").strip()
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())


def _customer_address(case: Case) -> str:
    if case.customer is None:
        return ""
    email = case.customer.emails.order_by("-is_primary", "pk").first()
    return email.email if email else ""


def default_recipients(*, case: Case, original: Message | None) -> dict[str, dict[str, str]]:
    """For each mail mode, the To and Cc an answer has unless the agent changes them (what
    `mailsync.services.relay` would choose; a case without a message writes to its customer)."""
    if original is None:
        customer = _customer_address(case)
        reply = {"to": customer, "cc": ""}
        return {"reply": reply, "reply_all": reply, "forward": {"to": "", "cc": ""}}
    author = [a["address"] for a in original.reply_to] or [original.from_address]
    ours = original.mailbox.address.lower()

    def others(recipients: list[dict]) -> list[str]:
        return [
            a["address"]
            for a in recipients
            if a.get("address")
            and a["address"].lower() != ours
            and not is_own_address(a["address"])
        ]

    everyone = _unique([*author, *others(original.to)])
    cc = [a for a in _unique(others(original.cc)) if a.lower() not in {e.lower() for e in everyone}]
    return {
        "reply": {"to": ", ".join(_unique(author)), "cc": ""},
        "reply_all": {"to": ", ".join(everyone), "cc": ", ".join(cc)},
        "forward": {"to": "", "cc": ""},
    }


# --- the form ----------------------------------------------------------------------------------


def _answerable(case: Case) -> QuerySet[CaseMessage]:
    return (
        CaseMessage.objects.filter(case=case)
        .select_related("message")
        .only(
            "direction",
            "message__id",
            "message__subject",
            "message__from_address",
            "message__from_name",
            "message__received_at",
            "message__sent_at",
            "created_at",
        )
        .order_by(Coalesce("message__received_at", "message__sent_at", "created_at").desc(), "-pk")
    )


def _macro_actions(macro: CannedResponse) -> str:
    parts = []
    if macro.set_status:
        parts.append(f"set status to {macro.get_set_status_display()}")
    if macro.add_tags:
        parts.append("add tags " + ", ".join(macro.add_tags))
    return "; ".join(parts)


def _form_context(request: HttpRequest, case: Case, draft: ReplyDraft | None) -> dict:
    """Everything the composer form shows: the draft (or an empty reply), the recipients each
    mode starts with, the messages it may answer, the canned responses and the signature."""
    original = draft.message if draft and draft.message_id else latest_inbound(case)
    defaults = default_recipients(case=case, original=original)
    mode = draft.mode if draft else "reply"
    start = defaults.get(mode, {"to": "", "cc": ""})
    # Empty To and Cc on an answer mean "whom it goes to by default", as in the services.
    if draft is not None and not (draft.to.strip() or draft.cc.strip()):
        draft_to, draft_cc = start["to"], start["cc"]
    else:
        draft_to, draft_cc = (draft.to, draft.cc) if draft else (start["to"], start["cc"])
    macros = [
        {"macro": macro, "actions": _macro_actions(macro)}
        for macro in selectors.macros_for(request.user, case).order_by("name", "pk")
    ]
    max_bytes = settings.MAIL_SEND_MAX_BYTES
    return {
        "case": case,
        "draft": draft,
        "mode": mode,
        "modes": [(value, MODE_LABELS[value]) for value in MODES],
        "to": draft_to,
        "cc": draft_cc,
        "bcc": draft.bcc if draft else "",
        "body": draft.body if draft else "",
        "message_id": draft.message_id if draft else None,
        "defaults": defaults,
        "answerable": list(_answerable(case)[:50]),
        "macros": macros,
        "signature": signature_html(request.user),
        "max_bytes": max_bytes,
        "max_mb": max(1, max_bytes // (1024 * 1024)),
        "undo_seconds": UNDO_SECONDS,
    }


@login_required
@require_GET
def composer(request: HttpRequest, number: str) -> HttpResponse:
    case = workspace.case_or_404(request, number)
    draft = draft_get(agent=request.user, case=case)
    return render(
        request, "cases/workspace/composer_form.html", _form_context(request, case, draft)
    )


# --- drafts ------------------------------------------------------------------------------------


def _case_message(case: Case, raw: str) -> Message | None:
    """The case's message named by a form's `message` value ('' = the default)."""
    raw = (raw or "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ComposerRefused("Choose a message of this case.", field="message")
    link = CaseMessage.objects.filter(case=case, message_id=int(raw)).select_related("message")
    found = link.first()
    if found is None:
        raise ComposerRefused("That message is not part of this case.", field="message")
    return found.message


@login_required
@require_POST
def save_draft(request: HttpRequest, number: str) -> HttpResponse:
    case = workspace.case_or_404(request, number)
    data = request.POST
    try:
        draft_save(
            agent=request.user,
            case=case,
            mode=data.get("mode", "reply"),
            body=data.get("body", ""),
            to=data.get("to", ""),
            cc=data.get("cc", ""),
            bcc=data.get("bcc", ""),
            message=_case_message(case, data.get("message", "")),
        )
    except REFUSALS as exc:
        return HttpResponse(_refusal_text(exc), status=400, content_type="text/plain")
    return HttpResponse(status=204)


@login_required
@require_POST
def discard_draft(request: HttpRequest, number: str) -> HttpResponse:
    case = workspace.case_or_404(request, number)
    draft_discard(agent=request.user, case=case)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect(reverse("web:case", kwargs={"number": case.number}))


# --- canned responses --------------------------------------------------------------------------


@login_required
@require_GET
def macro_text(request: HttpRequest, number: str, macro_id: int) -> JsonResponse:
    """A canned response for this case, as text for the editor (variables filled in)."""
    case = workspace.case_or_404(request, number)
    macro = selectors.macros_for(request.user, case).filter(pk=macro_id).first()
    if macro is None:
        raise Http404("No such canned response for this case.")
    try:
        body = services.macro_render(macro=macro, case=case, agent=request.user)
        subject = macro_render_subject(macro=macro, case=case, agent=request.user)
    except REFUSALS as exc:
        return JsonResponse({"error": _refusal_text(exc)}, status=422)
    return JsonResponse(
        {"name": macro.name, "text": html_to_text(body).strip(), "subject": subject}
    )


# --- sending -----------------------------------------------------------------------------------


@dataclass
class Outgoing:
    """The composer's form, checked: what will be sent or noted."""

    mode: str
    text: str
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    bcc: list[str] = field(default_factory=list)
    message: Message | None = None
    signature: bool = True
    files: list[OutgoingFile] = field(default_factory=list)
    macro: CannedResponse | None = None


def _addresses(raw: str, label: str) -> list[str]:
    found = []
    for part in ADDRESS_SEPARATORS.split(raw or ""):
        if not part.strip():
            continue
        _, address = parseaddr(part.strip())
        try:
            validate_email(address)
        except ValidationError:
            raise ComposerRefused(
                f"{label}: “{part.strip()}” is not an email address.", field=label.lower()
            ) from None
        found.append(address)
    found = _unique(found)
    if len(found) > MAX_RECIPIENTS:
        raise ComposerRefused(f"{label}: {MAX_RECIPIENTS} addresses at most.", field=label.lower())
    return found


def _files(request: HttpRequest, mode: str) -> list[OutgoingFile]:
    uploads = request.FILES.getlist("attachments")
    if not uploads:
        return []
    if mode == "note":
        raise ComposerRefused(
            "A note cannot carry files: remove them, or send them in a reply.", field="attachments"
        )
    if len(uploads) > MAX_FILES:
        raise ComposerRefused(f"{MAX_FILES} files at most.", field="attachments")
    total = sum(upload.size or 0 for upload in uploads)
    if total > settings.MAIL_SEND_MAX_BYTES:
        limit = max(1, settings.MAIL_SEND_MAX_BYTES // (1024 * 1024))
        raise ComposerRefused(
            f"Attachments may add up to {limit} MB; these are larger. Nothing was sent.",
            field="attachments",
        )
    return [
        OutgoingFile(
            name=(upload.name or "attachment")[:200],
            content=upload.read(),
            content_type=upload.content_type or "application/octet-stream",
        )
        for upload in uploads
    ]


def _macro_to_apply(request: HttpRequest, case: Case) -> CannedResponse | None:
    raw = request.POST.get("macro", "").strip()
    if request.POST.get("apply_macro") not in {"1", "on", "true"} or not raw:
        return None
    macro = (
        selectors.macros_for(request.user, case).filter(pk=int(raw)).first()
        if raw.isdigit()
        else None
    )
    if macro is None:
        raise ComposerRefused("That canned response cannot be used on this case.", field="macro")
    return macro


def _read_form(request: HttpRequest, case: Case) -> Outgoing:
    data = request.POST
    mode = data.get("mode", "reply")
    if mode not in MODES:
        raise ComposerRefused(f"“{mode}” is not a way to answer.", field="mode")
    text = data.get("body", "")
    if not text.strip() and mode != "forward":
        raise ComposerRefused(
            "Write something to send." if mode != "note" else "A note cannot be empty.",
            field="body",
        )
    outgoing = Outgoing(mode=mode, text=text, macro=_macro_to_apply(request, case))
    outgoing.files = _files(request, mode)
    if mode == "note":
        return outgoing
    outgoing.to = _addresses(data.get("to", ""), "To")
    outgoing.cc = _addresses(data.get("cc", ""), "Cc")
    outgoing.bcc = _addresses(data.get("bcc", ""), "Bcc")
    if mode == "forward" and not outgoing.to:
        raise ComposerRefused("A forward needs at least one recipient in To.", field="to")
    outgoing.message = _case_message(case, data.get("message", ""))
    outgoing.signature = data.get("signature") in {"1", "on", "true"}
    return outgoing


def _deliver(actor: User, case: Case, outgoing: Outgoing) -> str:
    """Send or note it; returns what happened, in a sentence for the agent."""
    if outgoing.mode == "note":
        services.case_add_note(actor=actor, case=case, body=outgoing.text.strip())
        return "Note added."
    common = {
        "actor": actor,
        "case": case,
        "body_html": linebreaks(outgoing.text.strip(), autoescape=True),
        "message": outgoing.message,
        "to": outgoing.to,
        "cc": outgoing.cc,
        "bcc": outgoing.bcc,
        "attachments": outgoing.files,
        "signature": outgoing.signature,
    }
    if outgoing.mode == "forward":
        link = services.case_forward(**common)
        verb = "Forwarded"
    else:
        link = services.case_reply(mode=outgoing.mode, **common)
        verb = "Sent"
    sent = link.message
    recipients = [r["address"] for r in (sent.to or [])] or outgoing.to
    return f"{verb} to {', '.join(recipients)}." if recipients else f"{verb}."


def _apply_macro(actor: User, case: Case, macro: CannedResponse | None) -> str:
    """Apply the canned response's actions after sending; a refusal is a warning, not an error
    (the mail is out and stays out)."""
    if macro is None:
        return ""
    try:
        services.macro_apply(macro=macro, case=case, actor=actor)
    except REFUSALS as exc:
        return f"The actions of “{macro.name}” were not applied: {_refusal_text(exc)}"
    return ""


def _refused(request: HttpRequest, case: Case, error: str) -> HttpResponse:
    if request.htmx:
        return render(request, "cases/workspace/composer_error.html", {"error": error}, status=422)
    flash.error(request, error)
    return redirect(reverse("web:case", kwargs={"number": case.number}))


def _sent_response(request: HttpRequest, case: Case, done: str, warning: str) -> HttpResponse:
    """The page's parts a send changes, for composer.js to put in place, and a fresh form."""
    case = workspace.case_queryset(request.user).get(pk=case.pk)
    context = {
        **_form_context(request, case, None),
        **workspace.case_parts_context(request, case),
        "done": done,
        "warning": warning,
    }
    return render(request, "cases/workspace/composer_sent.html", context)


@login_required
@require_POST
def send(request: HttpRequest, number: str) -> HttpResponse:
    case = workspace.case_or_404(request, number)
    try:
        outgoing = _read_form(request, case)
        done = _deliver(request.user, case, outgoing)
    except REFUSALS as exc:
        return _refused(request, case, _refusal_text(exc))
    draft_discard(agent=request.user, case=case)
    warning = _apply_macro(request.user, case, outgoing.macro)
    if request.htmx:
        return _sent_response(request, case, done, warning)
    flash.success(request, done)
    if warning:
        flash.warning(request, warning)
    return redirect(reverse("web:case", kwargs={"number": case.number}))


COMPOSER = "cases/<str:number>/composer"

urlpatterns = [
    path(COMPOSER, composer, name="case-composer"),
    path(COMPOSER + "/draft", save_draft, name="case-composer-draft"),
    path(COMPOSER + "/draft/discard", discard_draft, name="case-composer-discard"),
    path(COMPOSER + "/macros/<int:macro_id>", macro_text, name="case-composer-macro"),
    path(COMPOSER + "/send", send, name="case-composer-send"),
]
