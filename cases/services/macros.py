"""Canned responses (macros): a reply written once with the case's variables, and optional
actions (set the status, add tags) applied with it.

Agents use them from the composer (through the API), workflow rules call `macro_apply`.

A macro's template is written by an admin or a lead, but the values put into it come from
customers (their names, the titles of their mails), and the result goes into an HTML reply. So
the template runs in a sandbox, not in the project's template engine:

- its own engine with no template loaders and no `{% load %}`, so it reaches no other template
  or tag library; `{% debug %}`, `{% url %}`, `{% csrf_token %}`, `{% autoescape %}`, `|safe`
  and `|safeseq` are not available;
- the context holds plain strings in dictionaries, never model instances, so a template can
  neither call a method nor follow a relation into data its author should not print;
- autoescaping is on (and cannot be switched off), so a customer named `<script>` arrives as
  text; the result is cleaned with nh3 as well, like any HTML body the API accepts.

A template that fails while rendering (a filter given text it cannot take) is a `MacroError`
with the reason, never a server error.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Iterable
from typing import Any

import nh3
from django.db import transaction
from django.template import (
    Context,
    Engine,
    Library,
    Template,
    TemplateSyntaxError,
    defaultfilters,
    defaulttags,
)
from django.utils.html import linebreaks
from django.utils.safestring import SafeString, mark_safe

from cases.choices import CaseStatus
from cases.errors import CaseError
from cases.models import CannedResponse, Case
from cases.services.cases import case_change_status, case_set_tags, normalize_tag
from crm.models import AgentProfile, User

logger = logging.getLogger(__name__)

ALLOWED_TAGS = frozenset(
    {
        "comment", "cycle", "filter", "firstof", "for", "if", "ifchanged", "now", "regroup",
        "resetcycle", "spaceless", "templatetag", "verbatim", "widthratio", "with",
    }
)  # fmt: skip
# Django's own tags, to tell "not offered here" from a typo or a stray end tag.
DJANGO_TAGS = frozenset(defaulttags.register.tags) | {"include", "extends", "block"}
BLOCKED_FILTERS = frozenset({"safe", "safeseq", "pprint"})
# A body without any HTML tag is plain text: its lines and paragraphs become <br> and <p>.
HTML_TAG = re.compile(r"<[a-zA-Z/!]")


class MacroError(CaseError):
    code = "macro_invalid"


class MacroRenderError(MacroError):
    code = "macro_render_failed"


# --- the sandbox ------------------------------------------------------------------------------


def _sandbox_library() -> Library:
    library = Library()
    library.tags.update(
        {name: tag for name, tag in defaulttags.register.tags.items() if name in ALLOWED_TAGS}
    )
    library.filters.update(
        {
            name: func
            for name, func in defaultfilters.register.filters.items()
            if name not in BLOCKED_FILTERS
        }
    )
    return library


class _SandboxEngine(Engine):
    """An engine whose only built-ins are the sandbox's tags and filters."""

    default_builtins: list[str] = []

    def get_template_builtins(self, builtins: list[str]) -> list[Library]:
        return [_sandbox_library()]


SANDBOX = _SandboxEngine(
    dirs=[], app_dirs=False, loaders=[], libraries={}, autoescape=True, debug=False
)


UNKNOWN_TAG = re.compile(r"^Invalid block tag on line (\d+): '(\w+)'")


def _compile(source: str) -> Template:
    """The template, or a TemplateSyntaxError that says what the sandbox offers instead of
    Django's advice to load a tag library (which the sandbox does not allow)."""
    try:
        return Template(source, engine=SANDBOX)
    except TemplateSyntaxError as exc:
        unknown = UNKNOWN_TAG.match(str(exc))
        if unknown is None:
            raise
        line, tag = unknown.groups()
        problem = "is not available in" if tag in DJANGO_TAGS else "is unknown or misplaced in"
        raise TemplateSyntaxError(
            f"line {line}: {{% {tag} %}} {problem} canned responses "
            f"(tags: {', '.join(sorted(ALLOWED_TAGS))})."
        ) from exc


# --- variables --------------------------------------------------------------------------------


def signature_html(agent: User | None) -> SafeString:
    """The agent's profile signature, escaped, its lines kept."""
    profile = AgentProfile.objects.filter(user=agent).only("signature").first() if agent else None
    if profile is None or not profile.signature.strip():
        return mark_safe("")  # noqa: S308 - empty
    lines = "<br>".join(html.escape(line) for line in profile.signature.strip().splitlines())
    return mark_safe(lines)  # noqa: S308 - every line escaped above


def _customer_vars(case: Case) -> dict[str, str]:
    customer = case.customer
    if customer is None:
        return {"name": "", "first_name": "", "email": "", "organization": ""}
    email = customer.emails.order_by("-is_primary", "pk").values_list("email", flat=True).first()
    return {
        "name": customer.name,
        "first_name": (customer.name.split() or [""])[0],
        "email": email or "",
        "organization": customer.organization.name if customer.organization_id else "",
    }


def _agent_vars(agent: User | None) -> dict[str, str]:
    if agent is None:
        return {"name": "", "first_name": "", "last_name": "", "email": ""}
    return {
        "name": agent.get_full_name() or agent.email,
        "first_name": agent.first_name,
        "last_name": agent.last_name,
        "email": agent.email,
    }


def macro_context(*, case: Case, agent: User | None) -> dict[str, Any]:
    """The variables a macro may use: strings in dictionaries only (see the module doc)."""
    return {
        "case": {
            "number": case.number,
            "title": case.title,
            "status": case.get_status_display(),
            "priority": case.get_priority_display(),
            "type": case.get_type_display(),
        },
        "customer": _customer_vars(case),
        "agent": _agent_vars(agent),
        "signature": signature_html(agent),
        "team": {"name": case.team.name, "email": case.team.email},
    }


def _sample_context() -> dict[str, Any]:
    """Made-up values to try a template on before it is saved."""
    return {
        "case": {"number": "CASE-000123", "title": "Invoice shows the wrong VAT rate",
                 "status": "In progress", "priority": "Normal", "type": "Question"},
        "customer": {"name": "Anna Example", "first_name": "Anna",
                     "email": "anna@customer.example", "organization": "Example Ltd"},
        "agent": {"name": "Sam Agent", "first_name": "Sam", "last_name": "Agent",
                  "email": "sam@support.example"},
        "signature": mark_safe("Sam Agent<br>Support"),  # noqa: S308 - a constant
        "team": {"name": "Support", "email": "support@support.example"},
    }  # fmt: skip


# --- rendering --------------------------------------------------------------------------------


def _render(name: str, source: str, context: dict[str, Any], *, escape: bool) -> str:
    try:
        template = _compile(source)
        return template.render(Context(context, autoescape=escape))
    except TemplateSyntaxError as exc:
        raise MacroRenderError(
            f"The canned response “{name}” does not parse: {exc}", field="macro"
        ) from exc
    except Exception as exc:  # a template's filters raise anything; never a 500
        logger.info("canned response %r failed to render: %r", name, exc)
        raise MacroRenderError(
            f"The canned response “{name}” cannot be rendered for this case: {exc}",
            field="macro",
        ) from exc


def _as_html(source: str, rendered: str) -> str:
    if not HTML_TAG.search(source):
        rendered = linebreaks(rendered.strip(), autoescape=False)  # escaped while rendering
    return nh3.clean(rendered)


def macro_render(*, macro: CannedResponse, case: Case, agent: User | None) -> str:
    """The macro's body for `case`, as HTML for a reply. No side effects."""
    context = macro_context(case=case, agent=agent)
    return _as_html(macro.body, _render(macro.name, macro.body, context, escape=True))


def macro_render_subject(*, macro: CannedResponse, case: Case, agent: User | None) -> str:
    """The macro's subject for `case` (plain text, so not HTML-escaped; '' when it has none)."""
    if not macro.subject.strip():
        return ""
    return _subject(macro, macro_context(case=case, agent=agent))


def _subject(macro: CannedResponse, context: dict[str, Any]) -> str:
    if not macro.subject.strip():
        return ""
    return " ".join(_render(macro.name, macro.subject, context, escape=False).split())


def template_render(
    *, name: str, source: str, case: Case, agent: User | None = None, as_html: bool = True
) -> str:
    """A workflow rule's own template (a note, an email, a task), in the macros' sandbox with
    the macros' variables: HTML like a macro's body, or plain text (subjects, task fields)."""
    context = macro_context(case=case, agent=agent)
    if as_html:
        return _as_html(source, _render(name, source, context, escape=True))
    return _render(name, source, context, escape=False).strip()


def macro_preview(*, macro: CannedResponse) -> tuple[str, str]:
    """(subject, HTML body) of the macro with made-up values, for the admin."""
    context = _sample_context()
    body = _as_html(macro.body, _render(macro.name, macro.body, context, escape=True))
    return _subject(macro, context), body


@transaction.atomic
def macro_apply(*, macro: CannedResponse, case: Case, actor: User | None) -> str:
    """Apply the macro's actions to `case` through the case services (which write the
    timeline) and return its body rendered after them. All or nothing: a refused status change
    or a body that cannot be rendered leaves the case as it was."""
    # One macro at a time per case: the tags are read, then written.
    list(Case.objects.select_for_update().filter(pk=case.pk).values_list("pk"))
    if macro.set_status:
        case_change_status(actor=actor, case=case, status=macro.set_status)
    if macro.add_tags:
        current = list(case.tags.values_list("name", flat=True))
        case_set_tags(actor=actor, case=case, names=[*current, *macro.add_tags])
    return macro_render(macro=macro, case=case, agent=actor)


# --- validation (admin forms and whoever creates macros) --------------------------------------


def macro_template_problem(source: str) -> str:
    """Why a macro template cannot be used, or '': a syntax error, a tag or filter the sandbox
    does not offer, or a failure on sample values."""
    try:
        template = _compile(source)
    except TemplateSyntaxError as exc:
        return f"This template does not parse: {exc}"
    try:
        template.render(Context(_sample_context()))
    except Exception as exc:  # see _render
        return f"This template fails on sample values: {exc}"
    return ""


def macro_clean_tags(names: Iterable[object]) -> list[str]:
    """The tag names normalised as cases store them; a name that is no tag raises."""
    cleaned: list[str] = []
    for name in names:
        tag = normalize_tag(name) if isinstance(name, str) else ""
        if not tag:
            raise MacroError(f"“{name}” is not a tag name.", field="add_tags")
        if tag not in cleaned:
            cleaned.append(tag)
    return cleaned


def macro_validate(
    *, body: str, subject: str = "", set_status: str = "", add_tags: Iterable[object] = ()
) -> dict[str, str]:
    """Every problem of a macro's fields, by field name (empty: it may be saved)."""
    problems = {
        field: problem
        for field, problem in (
            ("body", macro_template_problem(body)),
            ("subject", macro_template_problem(subject) if subject else ""),
        )
        if problem
    }
    if set_status and set_status not in CaseStatus.values:
        problems["set_status"] = (
            f"“{set_status}” is not a case status ({', '.join(CaseStatus.values)})."
        )
    try:
        macro_clean_tags(add_tags)
    except MacroError as exc:
        problems["add_tags"] = exc.message
    return problems
