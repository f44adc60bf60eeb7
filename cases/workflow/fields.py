"""What a condition can look at, and how its value is read and checked.

Each field names a kind; the kind decides which operators it takes and how the text an admin
typed becomes the value compared (a team's name becomes its id, a list is split on commas).
`compile_condition` does that once, when the rules are loaded, and returns a predicate over a
`Subject`; validation in admin and the API calls the same function, so a rule that saves is a
rule that runs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.db.models import Q

from cases.choices import (
    CaseStatus,
    CaseType,
    Channel,
    Operator,
    OrganizationTier,
    Priority,
    Sentiment,
    SlaMetric,
)
from cases.errors import CaseError

MAX_REGEX = 500
SCAN_CHARS = 20_000  # of a message body or description: bounded for any regular expression


class RuleError(CaseError):
    """A rule, condition or action that does not validate (admin form and API show it)."""


# --- the subject a condition looks at ------------------------------------------------------------


@dataclass
class Subject:
    """A case as one event saw it: the case (after the change), what changed (field →
    (old, new), in the canonical values below) and the message, if the event had one.
    The customer and the message load on first use, so rules that do not ask cost nothing."""

    case: Any
    changes: dict[str, tuple[Any, Any]] = field(default_factory=dict)
    message_id: int | None = None
    data: dict[str, Any] = field(default_factory=dict)
    _message: Any = None
    _tags: frozenset[str] | None = None

    @property
    def customer(self) -> Any:
        return self.case.customer if self.case.customer_id else None

    @property
    def organization(self) -> Any:
        return self.case.organization if self.case.organization_id else None

    @property
    def message(self) -> Any:
        if self._message is None and self.message_id is not None:
            from mailsync.models import Message

            self._message = Message.objects.filter(pk=self.message_id).first()
        return self._message

    @property
    def tags(self) -> frozenset[str]:
        if self._tags is None:
            self._tags = frozenset(self.case.tags.values_list("name", flat=True))
        return self._tags

    def forget_tags(self) -> None:
        self._tags = None


# --- kinds ---------------------------------------------------------------------------------------

EQUALITY = (Operator.IS, Operator.IS_NOT, Operator.ONE_OF, Operator.NONE_OF)
PRESENCE = (Operator.IS_SET, Operator.NOT_SET)
CHANGES = (Operator.CHANGED, Operator.CHANGED_FROM, Operator.CHANGED_TO)
TEXT = (
    Operator.IS,
    Operator.IS_NOT,
    Operator.CONTAINS,
    Operator.NOT_CONTAINS,
    Operator.STARTS_WITH,
    Operator.ENDS_WITH,
    Operator.MATCHES,
)


@dataclass(frozen=True)
class Kind:
    """How a kind of field parses a value and which operators it takes."""

    name: str
    operators: tuple[str, ...]
    parse: Callable[[str], Any]


def _choices(choices: type) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip()
        for choice_value, label in choices.choices:
            if value.casefold() in (choice_value, str(label).casefold()):
                return choice_value
        allowed = ", ".join(choices.values)
        raise RuleError(f"“{value}” is not one of: {allowed}.", field="value")

    return parse


def _named(model: str, column: str, what: str) -> Callable[[str], int]:
    """A row named by `column` (case-insensitively), as its id; RuleError if there is none."""

    def parse(text: str) -> int:
        from django.apps import apps

        rows = apps.get_model(model).objects.filter(**{f"{column}__iexact": text.strip()})
        pk = rows.values_list("pk", flat=True).first()
        if pk is None:
            raise RuleError(f"There is no {what} “{text.strip()}”.", field="value")
        return pk

    return parse


_team = _named("crm.Team", "name", "team")
_agent = _named("crm.User", "email", "agent with the address")
_category = _named("cases.Category", "name", "category")


def _tag(text: str) -> str:
    from cases.services.cases import normalize_tag

    name = normalize_tag(text)
    if not name:
        raise RuleError("Enter a tag.", field="value")
    return name


def _text(text: str) -> str:
    if not text.strip():
        raise RuleError("Enter the text to compare with.", field="value")
    return text.strip().casefold()


def _bool(text: str) -> bool:
    folded = text.strip().casefold()
    if folded in ("yes", "true", "1", "on"):
        return True
    if folded in ("no", "false", "0", "off"):
        return False
    raise RuleError("Enter yes or no.", field="value")


KINDS = {
    "status": Kind("status", EQUALITY + CHANGES, _choices(CaseStatus)),
    "priority": Kind("priority", EQUALITY + CHANGES, _choices(Priority)),
    "type": Kind("type", EQUALITY + CHANGES, _choices(CaseType)),
    "channel": Kind("channel", EQUALITY, _choices(Channel)),
    "sentiment": Kind("sentiment", EQUALITY + CHANGES, _choices(Sentiment)),
    "tier": Kind("tier", EQUALITY + PRESENCE, _choices(OrganizationTier)),
    "sla_metric": Kind("sla_metric", EQUALITY, _choices(SlaMetric)),
    "team": Kind("team", EQUALITY + CHANGES, _team),
    "agent": Kind("agent", EQUALITY + PRESENCE + CHANGES, _agent),
    "category": Kind("category", EQUALITY + PRESENCE + CHANGES, _category),
    "tags": Kind("tags", (Operator.CONTAINS, Operator.NOT_CONTAINS, *PRESENCE), _tag),
    "text": Kind("text", TEXT + PRESENCE, _text),
    "bool": Kind("bool", (Operator.IS,), _bool),
}


# --- fields --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A field a condition reads. `get` returns the canonical value (ids for relations, a
    casefolded string for text); `column` is the case column a time-based rule's query can
    filter on, when there is one; `change_key` is its name in an event's changes."""

    key: str
    label: str
    kind: str
    get: Callable[[Subject], Any]
    column: str | None = None
    change_key: str | None = None


def _fold(value: str | None) -> str:
    return (value or "").casefold()


def _customer_email(subject: Subject) -> str:
    customer = subject.customer
    if customer is None:
        return ""
    emails = list(customer.emails.all())
    primary = next((e for e in emails if e.is_primary), emails[0] if emails else None)
    return _fold(primary.email if primary else "")


def _message_attr(name: str) -> Callable[[Subject], str]:
    def get(subject: Subject) -> str:
        message = subject.message
        return _fold(getattr(message, name, "") or "")[:SCAN_CHARS] if message else ""

    return get


def _message_recipients(subject: Subject) -> str:
    message = subject.message
    if message is None:
        return ""
    addresses = [entry.get("address", "") for entry in [*message.to, *message.cc] if entry]
    return _fold(", ".join(addresses))


def _case(attribute: str, kind: str, label: str, **extra: Any) -> Field:
    return Field(
        key=f"case.{attribute.removesuffix('_id')}",
        label=label,
        kind=kind,
        get=lambda s: getattr(s.case, attribute),
        column=attribute,
        change_key=attribute.removesuffix("_id"),
        **extra,
    )


FIELDS: dict[str, Field] = {
    f.key: f
    for f in (
        _case("status", "status", "Case status"),
        _case("priority", "priority", "Case priority"),
        _case("type", "type", "Case type"),
        _case("channel", "channel", "Case channel"),
        _case("sentiment", "sentiment", "Case sentiment"),
        _case("team_id", "team", "Case team"),
        _case("assignee_id", "agent", "Case assignee"),
        _case("category_id", "category", "Case category"),
        Field("case.tags", "Case tags", "tags", lambda s: s.tags, change_key="tags"),
        Field("case.title", "Case title", "text", lambda s: _fold(s.case.title)),
        Field(
            "case.description",
            "Case description",
            "text",
            lambda s: _fold(s.case.description[:SCAN_CHARS]),
        ),
        Field("customer.email", "Customer email", "text", _customer_email),
        Field(
            "customer.name",
            "Customer name",
            "text",
            lambda s: _fold(s.customer.name if s.customer else ""),
        ),
        Field(
            "customer.vip",
            "Customer is VIP",
            "bool",
            lambda s: bool(s.customer and s.customer.is_vip),
        ),
        Field(
            "organization.name",
            "Organization name",
            "text",
            lambda s: _fold(s.organization.name if s.organization else ""),
        ),
        Field(
            "organization.tier",
            "Organization tier",
            "tier",
            lambda s: s.organization.tier if s.organization else None,
        ),
        Field("message.subject", "Message subject", "text", _message_attr("subject")),
        Field("message.body", "Message text", "text", _message_attr("body_text")),
        Field("message.from", "Message sender", "text", _message_attr("from_address")),
        Field("message.to", "Message recipients (to, cc)", "text", _message_recipients),
        Field(
            "sla.metric",
            "SLA target (SLA triggers)",
            "sla_metric",
            lambda s: s.data.get("metric"),
        ),
        Field(
            "message.has_attachments",
            "Message has attachments",
            "bool",
            lambda s: bool(s.message and s.message.has_attachments),
        ),
    )
}

FIELD_CHOICES = [(f.key, f.label) for f in FIELDS.values()]


# --- compiling a condition -----------------------------------------------------------------------

Predicate = Callable[[Subject], bool]
LIST_OPERATORS = (Operator.ONE_OF, Operator.NONE_OF)
NO_VALUE = (*PRESENCE, Operator.CHANGED)


@dataclass(frozen=True)
class Compiled:
    """A condition ready to run: its predicate, and a Q over case columns when one exists
    (time-based rules let the database do that part)."""

    test: Predicate
    q: Q | None = None


def compile_condition(*, field_key: str, operator: str, value: str) -> Compiled:
    """Check a condition and turn it into a predicate; RuleError says what is wrong."""
    spec = FIELDS.get(field_key)
    if spec is None:
        raise RuleError(f"“{field_key}” is not a field rules can look at.", field="field")
    kind = KINDS[spec.kind]
    if operator not in kind.operators:
        allowed = ", ".join(Operator(o).label for o in kind.operators)
        raise RuleError(f"{spec.label} takes these comparisons: {allowed}.", field="operator")
    if operator in CHANGES and spec.change_key is None:
        raise RuleError(f"Changes of {spec.label.lower()} are not tracked.", field="operator")
    if operator in NO_VALUE:
        if value.strip():
            raise RuleError(f"“{Operator(operator).label}” takes no value.", field="value")
        parsed: Any = None
    elif operator in LIST_OPERATORS:
        items = [part for part in value.split(",") if part.strip()]
        if not items:
            raise RuleError("Enter one or more values, separated by commas.", field="value")
        parsed = frozenset(kind.parse(item) for item in items)
    elif operator == Operator.MATCHES:
        parsed = _regex(value)
    else:
        parsed = kind.parse(value)
    return Compiled(test=_predicate(spec, operator, parsed), q=_query(spec, operator, parsed))


def _regex(value: str) -> re.Pattern[str]:
    if not value.strip():
        raise RuleError("Enter a regular expression.", field="value")
    if len(value) > MAX_REGEX:
        raise RuleError(f"A regular expression has at most {MAX_REGEX} characters.",
                        field="value")  # fmt: skip
    try:
        return re.compile(value, re.IGNORECASE)
    except re.error as exc:
        raise RuleError(f"Not a valid regular expression: {exc}.", field="value") from None


def _predicate(spec: Field, operator: str, value: Any) -> Predicate:  # noqa: C901 - a table
    get, key = spec.get, spec.change_key
    match operator:
        case Operator.IS:
            return lambda s: get(s) == value
        case Operator.IS_NOT:
            return lambda s: get(s) != value
        case Operator.ONE_OF:
            return lambda s: get(s) in value
        case Operator.NONE_OF:
            return lambda s: get(s) not in value
        case Operator.CONTAINS if spec.kind == "tags":
            return lambda s: value in get(s)
        case Operator.NOT_CONTAINS if spec.kind == "tags":
            return lambda s: value not in get(s)
        case Operator.CONTAINS:
            return lambda s: value in get(s)
        case Operator.NOT_CONTAINS:
            return lambda s: value not in get(s)
        case Operator.STARTS_WITH:
            return lambda s: get(s).startswith(value)
        case Operator.ENDS_WITH:
            return lambda s: get(s).endswith(value)
        case Operator.MATCHES:
            return lambda s: value.search(get(s)) is not None
        case Operator.IS_SET:
            return lambda s: bool(get(s))
        case Operator.NOT_SET:
            return lambda s: not get(s)
        case Operator.CHANGED:
            return lambda s: key in s.changes
        case Operator.CHANGED_FROM:
            return lambda s: key in s.changes and s.changes[key][0] == value
        case Operator.CHANGED_TO:
            return lambda s: key in s.changes and s.changes[key][1] == value
    raise RuleError(f"“{operator}” is not a comparison.", field="operator")


def _query(spec: Field, operator: str, value: Any) -> Q | None:
    """The same test as a filter on the case's own column, for equality tests on columns."""
    column = spec.column
    if column is None:
        return None
    match operator:
        case Operator.IS:
            return Q(**{column: value})
        case Operator.IS_NOT:
            return ~Q(**{column: value}) | Q(**{f"{column}__isnull": True})
        case Operator.ONE_OF:
            return Q(**{f"{column}__in": sorted(value)})
        case Operator.NONE_OF:
            return ~Q(**{f"{column}__in": sorted(value)}) | Q(**{f"{column}__isnull": True})
        case Operator.IS_SET:
            return Q(**{f"{column}__isnull": False})
        case Operator.NOT_SET:
            return Q(**{f"{column}__isnull": True})
    return None


def operators_by_field() -> dict[str, list[str]]:
    """For the admin's help text and the API's schema of rules."""
    return {key: list(KINDS[f.kind].operators) for key, f in FIELDS.items()}
