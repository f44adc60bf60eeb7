"""Triage of new cases: priority, category, sentiment and a one-paragraph summary.

Two classifiers fill the same four fields:

- **The built-in rules** (`triage_suggest`), deterministic and cheap enough for intake's hot
  path: the rule table (`TriageRule`, edited in admin) is compiled once per process and kept
  until its version token changes. The token lives in the shared cache; every admin change
  bumps it (`triage_rules_changed`) and each process reads it at most once a second, so a
  classification costs no database query and almost never a cache read. Per field, each
  matching rule votes its weight for its value; the most weight wins and a tie goes to the
  rule with the lowest order. The summary is the first meaningful sentences of the body,
  without quotes, greetings and signature.
- **A language model** behind an OpenAI-compatible `/chat/completions` endpoint, when
  `TRIAGE_LLM_URL` is set. It runs after commit in a Celery task (`cases.tasks.triage_llm`),
  never inside intake. Its answer is validated strictly; a timeout, an HTTP error, malformed
  JSON or a value outside the allowed ones keeps the built-in result and records why.

Neither ever overwrites a field an agent changed: `case_update` calls
`triage_record_overrides`, which marks the field as the agent's and records a
`TriageOverride` (suggested, chosen, the rules behind the suggestion) for tuning the rules.

`Case.triage` keeps what happened: `fields` (per field: value, source, winning rule ids),
`builtin` (the rules' result, kept when the model replaces it), `matched` (every rule that
matched), `overridden` (fields that are the agent's), `llm` (status, model, error).
"""

from __future__ import annotations

import bisect
import json
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import requests
from django.apps import apps as global_apps
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cases.choices import Priority, Sentiment, TimelineKind
from cases.errors import CaseError
from cases.models import (
    Case,
    Category,
    TriageField,
    TriageMatch,
    TriageOverride,
    TriageRule,
    TriageSource,
    TriageWhere,
)
from cases.services.sla import sla_refresh
from cases.services.timeline import display, timeline_record
from crm.models import User
from crm.snapshots import Snapshot

logger = logging.getLogger(__name__)

SCAN_CHARS = 5_000  # of the cleaned body: enough to classify, bounded for any regex
RAW_CHARS = 20_000  # of the raw body: what the cleaning looks at
SUMMARY_CHARS = 400
SUMMARY_MIN_CHARS = 160
LLM_BODY_CHARS = 6_000
LLM_SUMMARY_CHARS = 600
DEFAULT_PRIORITY = Priority.NORMAL.value
DEFAULT_SENTIMENT = Sentiment.NEUTRAL.value
RULE_SENTIMENTS = (Sentiment.POSITIVE.value, Sentiment.NEUTRAL.value, Sentiment.NEGATIVE.value)
SUGGESTED_FIELDS = ("priority", "category", "sentiment", "summary")
MAX_KEYWORD = 100
MAX_PATTERN = 2_000
MAX_REGEX = 500

TOKEN = re.compile(r"\w+")
DOMAIN = re.compile(r"^[a-z0-9-]+(?:\.[a-z0-9-]+)*$")


class TriageError(CaseError):
    code = "invalid_triage"


class LlmError(Exception):
    """The language model's answer cannot be used; the message says why, for `Case.triage`."""


# --- the suggestion ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Suggestion:
    """What a classifier proposes for a new case. `rules` names, per field, the rules whose
    votes won (empty for a default or the model's answer); `matched` every rule that matched."""

    priority: str = DEFAULT_PRIORITY
    sentiment: str = DEFAULT_SENTIMENT
    category_id: int | None = None
    category_name: str = ""
    summary: str = ""
    rules: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    matched: tuple[int, ...] = ()
    source: str = TriageSource.RULES.value
    model: str = ""

    def value_of(self, name: str) -> str:
        """The field's value as `Case.triage` and `TriageOverride` show it."""
        return self.category_name if name == "category" else getattr(self, name)


# --- rules, compiled and cached per process ---------------------------------------------------


@dataclass
class _Text:
    """One message, prepared once for every rule: case-folded text and token sets."""

    subject: str
    body: str
    domain: str
    folded: dict[str, str] = field(default_factory=dict)
    tokens: dict[str, frozenset[str]] = field(default_factory=dict)
    sorted_tokens: dict[str, list[str]] = field(default_factory=dict)

    def raw(self, where: str) -> str:
        return self.subject if where == TriageWhere.SUBJECT else self.body

    def fold(self, where: str) -> str:
        if where not in self.folded:
            self.folded[where] = _fold(self.raw(where))
        return self.folded[where]

    def token_set(self, where: str) -> frozenset[str]:
        if where not in self.tokens:
            self.tokens[where] = frozenset(TOKEN.findall(self.fold(where)))
        return self.tokens[where]

    def has_phrase(self, where: str, phrase: _Phrase) -> bool:
        if not phrase.words <= self.token_set(where):  # cheap, and rules out most texts
            return False
        folded = self.fold(where)
        for found in phrase.pattern.finditer(folded):
            start, end = found.span()
            if start and (folded[start - 1].isalnum() or folded[start - 1] == "_"):
                continue
            if phrase.prefix or end == len(folded) or not _is_word(folded[end]):
                return True
        return False

    def has_prefix(self, where: str, stem: str) -> bool:
        if where not in self.sorted_tokens:
            self.sorted_tokens[where] = sorted(self.token_set(where))
        words = self.sorted_tokens[where]
        at = bisect.bisect_left(words, stem)
        return at < len(words) and words[at].startswith(stem)


def _fold(text: str) -> str:
    """Case-folded, with typographic apostrophes made plain (doesn’t = doesn't)."""
    return text.casefold().replace("’", "'")


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"


@dataclass(frozen=True)
class _Phrase:
    """Words in this order as whole words (the last one may go on when `prefix`). Searched
    without look-arounds, which would cost Python's regex engine its literal scan."""

    pattern: re.Pattern[str]
    words: frozenset[str]  # all in the text's tokens, or no match
    prefix: bool


@dataclass(frozen=True)
class _Rule:
    pk: int
    field: str
    value: str  # the priority or sentiment; the category's name for category rules
    category_id: int | None
    weight: int
    order: int
    places: tuple[str, ...]  # "subject" and/or "body"; empty for the sender's domain
    words: frozenset[str] = frozenset()
    stems: tuple[str, ...] = ()
    domains: tuple[str, ...] = ()
    phrases: tuple[_Phrase, ...] = ()
    raw: tuple[re.Pattern[str], ...] = ()  # searched in the text as written

    def matches(self, text: _Text) -> bool:
        if not self.places:
            return self._matches_domain(text.domain)
        for place in self.places:
            tokens = text.token_set(place)
            if not self.words.isdisjoint(tokens):
                return True
            if any(text.has_prefix(place, stem) for stem in self.stems):
                return True
            if any(text.has_phrase(place, phrase) for phrase in self.phrases):
                return True
            if any(p.search(text.raw(place)) for p in self.raw):
                return True
        return False

    def _matches_domain(self, domain: str) -> bool:
        if not domain:
            return False
        if any(domain == d or domain.endswith("." + d) for d in self.domains):
            return True
        return any(p.search(domain) for p in self.raw)


@dataclass(frozen=True)
class _Ruleset:
    rules: tuple[_Rule, ...]


def _phrase(text: str) -> _Phrase:
    """A phrase as written in a rule; a trailing * lets its last word go on."""
    prefix = text.endswith("*")
    folded = _fold(text.removesuffix("*"))
    words = TOKEN.findall(folded)
    if prefix and folded and _is_word(folded[-1]):
        words = words[:-1]  # "error 5*" needs "error", not "5"
    pattern = re.compile(r"\s+".join(map(re.escape, folded.split())))
    return _Phrase(pattern=pattern, words=frozenset(words), prefix=prefix)


def split_keywords(pattern: str) -> list[str]:
    return [part.strip() for part in re.split(r"[,;\n]", pattern) if part.strip()]


def _compile(rule: TriageRule, category_name: str) -> _Rule:
    """The rule ready to test; assumes `triage_rule_validate` accepts it."""
    places = {
        TriageWhere.SUBJECT: ("subject",),
        TriageWhere.BODY: ("body",),
        TriageWhere.BOTH: ("subject", "body"),
    }.get(rule.where, ())
    parts: dict[str, Any] = {}
    if rule.where == TriageWhere.SENDER_DOMAIN:
        if rule.match_type == TriageMatch.REGEX:
            parts["raw"] = (re.compile(rule.pattern, re.IGNORECASE),)
        else:
            parts["domains"] = tuple(k.casefold().lstrip(".") for k in split_keywords(rule.pattern))
    elif rule.match_type == TriageMatch.KEYWORDS:
        words, stems, phrases = set(), [], []
        for keyword in (k.casefold() for k in split_keywords(rule.pattern)):
            stem = keyword.removesuffix("*")
            if not TOKEN.fullmatch(stem):
                phrases.append(_phrase(keyword))
            elif keyword.endswith("*"):
                stems.append(stem)
            else:
                words.add(stem)
        parts.update(words=frozenset(words), stems=tuple(stems), phrases=tuple(phrases))
    elif rule.match_type == TriageMatch.PHRASE:
        parts["phrases"] = (_phrase(rule.pattern),)
    else:
        parts["raw"] = (re.compile(rule.pattern, re.IGNORECASE),)
    return _Rule(
        pk=rule.pk,
        field=rule.field,
        value=category_name if rule.field == TriageField.CATEGORY else rule.value,
        category_id=rule.category_id,
        weight=rule.weight,
        order=rule.order,
        places=places,
        **parts,
    )


def _load() -> _Ruleset:
    """Two queries: the active rules with their categories."""
    compiled = []
    rules = (
        TriageRule.objects.filter(active=True).select_related("category").order_by("order", "pk")
    )
    for rule in rules:
        if rule.category_id is not None and not rule.category.active:
            continue
        try:
            triage_rule_validate(
                field=rule.field, match_type=rule.match_type, pattern=rule.pattern,
                where=rule.where, value=rule.value, category=rule.category, weight=rule.weight,
            )  # fmt: skip
        except TriageError as exc:  # written around the admin's validation: skip, say so
            logger.warning("triage rule %s skipped: %s", rule.pk, exc.message)
            continue
        compiled.append(_compile(rule, rule.category.name if rule.category_id else ""))
    return _Ruleset(rules=tuple(compiled))


# Rebuilt in every process when an admin changes rules or categories (a cache read costs
# about as much as the classification itself, hence at most once a second).
_rules = Snapshot("cases:triage:rules-version", _load)


def _current_rules() -> _Ruleset:
    return _rules.get()


def triage_rules_changed() -> None:
    """Rules or categories changed: every process reloads them before its next
    classification."""
    _rules.changed()


# --- the built-in classifier -----------------------------------------------------------------


def triage_suggest(*, subject: str, body: str, sender: str) -> Suggestion:
    """The built-in classification of one message: deterministic for a given rule table,
    no database query while the rules are cached."""
    cleaned = clean_body(body)
    text = _Text(
        subject=subject or "",
        body=cleaned,
        domain=sender.rpartition("@")[2].strip().casefold(),
    )
    votes: dict[str, dict[str, list]] = {}  # field -> value -> [weight, first order, rule ids]
    matched = []
    categories: dict[str, int | None] = {}
    for rule in _current_rules().rules:
        if not rule.matches(text):
            continue
        matched.append(rule.pk)
        tally = votes.setdefault(rule.field, {}).setdefault(rule.value, [0, rule.order, []])
        tally[0] += rule.weight
        tally[2].append(rule.pk)
        if rule.category_id is not None:
            categories[rule.value] = rule.category_id
    winners = {name: _winner(tallies) for name, tallies in votes.items()}
    category = winners.get(TriageField.CATEGORY)
    return Suggestion(
        priority=_value(winners, TriageField.PRIORITY, DEFAULT_PRIORITY),
        sentiment=_value(winners, TriageField.SENTIMENT, DEFAULT_SENTIMENT),
        category_id=categories.get(category[0]) if category else None,
        category_name=category[0] if category else "",
        summary=summarize(cleaned, subject=subject),
        rules={name: tuple(ids) for name, (_, ids) in winners.items()},
        matched=tuple(matched),
    )


def _winner(tallies: dict[str, list]) -> tuple[str, list[int]]:
    value, (_, _, ids) = max(tallies.items(), key=lambda item: (item[1][0], -item[1][1]))
    return value, ids


def _value(winners: dict[str, tuple[str, list[int]]], name: str, default: str) -> str:
    return winners[name][0] if name in winners else default


# --- cleaning and summarising -----------------------------------------------------------------

QUOTE_START = re.compile(
    r"^\s*(?:"
    r"on\b.{0,200}\bwrote:?"
    r"|am\b.{0,200}\bschrieb\b.{0,200}:?"
    r"|-{2,}\s*(?:original message|ursprüngliche nachricht|forwarded message"
    r"|weitergeleitete nachricht)\s*-{2,}"
    r"|_{20,}"
    r")\s*$",
    re.IGNORECASE,
)
HEADER_BLOCK = re.compile(r"^\s*(?:from|von):\s", re.IGNORECASE)
HEADER_NEXT = re.compile(r"^\s*(?:sent|gesendet|date|datum|to|an):\s", re.IGNORECASE)
CLOSING = re.compile(
    r"^\s*(?:(?:best|kind|warm|warmest|many)\s+)?(?:regards|wishes|greetings|cheers)"
    r"[\s,.!]*(?:[^\W\d_][\w .'-]{0,30})?$"
    r"|^\s*(?:thanks|thank you|thx|many thanks)(?: (?:in advance|a lot|again))?[\s,.!]*$"
    r"|^\s*(?:mit\s+)?(?:freundliche|beste|viele|liebe|herzliche|schöne|sonnige)n?"
    r"\s+grü(?:ß|ss)(?:e|en)?\b.{0,30}$"
    r"|^\s*(?:grüße|grüsse|gruß|gruss|lg|mfg|vg|bg)[\s,.!]*$"
    r"|^\s*(?:danke|vielen dank)(?: im voraus| vorab)?[\s,.!]*$"
    r"|^\s*(?:sent from my|gesendet von meinem|von meinem)\b.{0,40}$",
    re.IGNORECASE,
)
GREETING = re.compile(
    r"^\s*(?:hi|hello|hey|dear|good (?:morning|afternoon|evening)|hallo|moin|servus"
    r"|guten (?:tag|morgen|abend)|sehr geehrte[rs]?|liebe[rs]?)\b"
    r"(?:[^.?!\n]{0,50}[,:]|(?:\s*[\w.-]+){0,2}[\s!.]*)\s*$",
    re.IGNORECASE,
)
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


def clean_body(body: str, *, limit: int = SCAN_CHARS) -> str:
    """The customer's own words, about `limit` characters of them: quoted replies, forwarded
    headers, signature and closing formula removed, greeting line dropped."""
    lines = (body or "")[:RAW_CHARS].replace("\r\n", "\n").replace("\r", "\n").split("\n")
    kept: list[str] = []
    size = 0
    for at, line in enumerate(lines):
        if size >= limit:
            break
        if line.rstrip() == "--" or QUOTE_START.match(line):
            break
        if HEADER_BLOCK.match(line) and at + 1 < len(lines) and HEADER_NEXT.match(lines[at + 1]):
            break
        if len(line) <= 60 and CLOSING.match(line):
            break
        if line.lstrip().startswith(">"):
            continue
        if not kept and (not line.strip() or GREETING.match(line)):
            continue
        kept.append(line)
        size += len(line) + 1
    return "\n".join(kept).strip()[:limit]


def summarize(cleaned: str, *, subject: str = "") -> str:
    """One paragraph of at most `SUMMARY_CHARS`: the first sentences of the cleaned body, or
    the subject when the body says nothing."""
    paragraph = " ".join(cleaned[: SUMMARY_CHARS * 5].split())
    if not paragraph:
        return _shorten(" ".join((subject or "").split()))
    summary = ""
    for sentence in SENTENCE_END.split(paragraph):
        summary = f"{summary} {sentence}".strip()
        if len(summary) >= SUMMARY_MIN_CHARS:
            break
    return _shorten(summary)


def _shorten(text: str, limit: int = SUMMARY_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    return (cut[:space] if space > limit // 2 else cut).rstrip(" ,;:") + "…"


# --- writing triage onto cases -----------------------------------------------------------------


def triage_llm_enabled() -> bool:
    return bool(settings.TRIAGE_LLM_URL)


def _field_entries(suggestion: Suggestion, builtin: Suggestion | None = None) -> dict:
    entries = {}
    for name in SUGGESTED_FIELDS:
        entry: dict[str, Any] = {"source": suggestion.source}
        if name != "summary":
            entry["value"] = suggestion.value_of(name)
            rules = suggestion.rules.get(name, ())
            if not rules and builtin is not None and builtin.value_of(name) == entry["value"]:
                rules = builtin.rules.get(name, ())  # the model agreed with these rules
            entry["rules"] = list(rules)
        if name == "category":
            entry["id"] = suggestion.category_id
        entries[name] = entry
    return entries


def _builtin_record(suggestion: Suggestion) -> dict:
    return {
        "priority": suggestion.priority,
        "category": suggestion.category_name,
        "sentiment": suggestion.sentiment,
        "rules": {name: list(ids) for name, ids in suggestion.rules.items()},
    }


def triage_prefill(case: Case, suggestion: Suggestion) -> None:
    """Fill an unsaved case with the built-in suggestion (intake: no extra UPDATE)."""
    case.priority = suggestion.priority
    case.sentiment = suggestion.sentiment
    case.category_id = suggestion.category_id
    case.summary = suggestion.summary
    case.triage = {
        "source": suggestion.source,
        "at": timezone.now().isoformat(),
        "fields": _field_entries(suggestion),
        "builtin": _builtin_record(suggestion),
        "matched": list(suggestion.matched),
        "overridden": [],
    }
    if triage_llm_enabled():
        case.triage["llm"] = {"status": "pending", "model": settings.TRIAGE_LLM_MODEL}


def triage_schedule_llm(*, case: Case) -> None:
    """Queue the language model's triage of a new case once it is committed."""
    if not triage_llm_enabled():
        return
    case_id = case.pk

    def enqueue() -> None:
        from cases.tasks import triage_llm

        triage_llm.delay(case_id)

    transaction.on_commit(enqueue, robust=True)


def _case_value(case: Case, name: str) -> object:
    return case.category if name == "category" else getattr(case, name)


@transaction.atomic
def triage_apply(*, case: Case, suggestion: Suggestion) -> list[str]:
    """Set a suggestion on a saved case, except the fields an agent overrode; one timeline
    event lists what changed. Returns the names of the changed fields."""
    locked = Case.objects.select_for_update(of=("self",)).select_related("category").get(pk=case.pk)
    state = dict(locked.triage or {})
    overridden = set(state.get("overridden", []))
    # A category deleted since the suggestion was made is not set.
    category = Category.objects.filter(pk=suggestion.category_id).first()
    wanted = {
        "priority": suggestion.priority,
        "category": category,
        "sentiment": suggestion.sentiment,
        "summary": suggestion.summary,
    }
    builtin = _builtin_suggestion(state)
    entries, suggested = dict(state.get("fields", {})), _field_entries(suggestion, builtin)
    changes = []
    for name, new in wanted.items():
        if name in overridden:
            continue
        entries[name] = suggested[name]
        old = _case_value(locked, name)
        if old != new:
            setattr(locked, name, new)
            changes.append((name, old, new))
    state.update(fields=entries, source=suggestion.source, at=timezone.now().isoformat())
    if suggestion.model:
        state["model"] = suggestion.model
    locked.triage = state
    locked.save(update_fields=[name for name, _, _ in changes] + ["triage", "updated_at"])
    if any(name == "priority" for name, _, _ in changes):
        sla_refresh(case=locked)
    if changes:
        by = f"model {suggestion.model}" if suggestion.model else "rules"
        timeline_record(
            case=locked,
            kind=TimelineKind.FIELD_CHANGED,
            actor=None,
            summary=f"Triage ({by}): "
            + ", ".join(
                f"{name} {display(old)} → {display(new)}"
                for name, old, new in changes
                if name != "summary"
            )
            + ("; summary written" if any(name == "summary" for name, _, _ in changes) else ""),
            field="triage",
            source=suggestion.source,
            changes={name: getattr(new, "pk", new) for name, _, new in changes},
        )
    _adopt_fields(case, locked)
    return [name for name, _, _ in changes]


def _adopt_fields(case: Case, saved: Case) -> None:
    for concrete in saved._meta.concrete_fields:
        setattr(case, concrete.attname, getattr(saved, concrete.attname))


def _builtin_suggestion(state: Mapping[str, Any]) -> Suggestion | None:
    builtin = state.get("builtin")
    if not builtin:
        return None
    return Suggestion(
        priority=builtin.get("priority", DEFAULT_PRIORITY),
        sentiment=builtin.get("sentiment", DEFAULT_SENTIMENT),
        category_name=builtin.get("category", ""),
        rules={name: tuple(ids) for name, ids in builtin.get("rules", {}).items()},
    )


def triage_record_overrides(
    *, case: Case, actor: User | None, changes: Iterable[tuple[str, object, object]]
) -> bool:
    """An update changed fields triage had set: they are the agent's from now on (triage
    never sets them again) and, for an agent's change of priority, category or sentiment, a
    `TriageOverride` records what was suggested and what they chose.

    Precondition: the caller holds the case row's lock and saves `case.triage` when this
    returns True.
    """
    state = case.triage or {}
    entries = state.get("fields", {})
    overridden = list(state.get("overridden", []))
    taken = [
        (name, new)
        for name, _, new in changes
        if name in SUGGESTED_FIELDS and name in entries and name not in overridden
    ]
    if not taken:
        return False
    for name, new in taken:
        overridden.append(name)
        if name == "summary" or actor is None:
            continue
        entry = entries[name]
        record = TriageOverride.objects.create(
            case=case,
            field=name,
            suggested=str(entry.get("value") or "")[:80],
            chosen=_override_value(new)[:80],
            source=entry.get("source", TriageSource.RULES),
            agent=actor,
        )
        rule_ids = entry.get("rules") or []
        if rule_ids:
            record.rules.set(TriageRule.objects.filter(pk__in=rule_ids))
    case.triage = {**state, "overridden": overridden}
    return True


def _override_value(value: object) -> str:
    if value is None:
        return ""
    return value.name if isinstance(value, Category) else str(value)


# --- the language model ------------------------------------------------------------------------


def triage_with_llm(*, case_id: int) -> str:
    """Ask the configured model to triage a case and apply its validated answer.

    Idempotent: a case the model already answered for (or failed on) is left alone. The
    network call happens outside any transaction; nothing is locked while it waits.
    Returns "off", "gone", "done", "applied" or "failed".
    """
    if not triage_llm_enabled():
        return "off"
    case = Case.objects.filter(pk=case_id).only("pk", "title", "description", "triage").first()
    if case is None:
        return "gone"
    if (case.triage or {}).get("llm", {}).get("status") in ("applied", "failed"):
        return "done"
    categories = dict(Category.objects.filter(active=True).values_list("name", "pk"))
    try:
        answer = _ask_llm(subject=case.title, body=case.description, categories=list(categories))
        suggestion = parse_llm_answer(answer, categories=categories)
    except LlmError as exc:
        logger.warning("triage by language model failed for case %s: %s", case_id, exc)
        _record_llm(case_id, status="failed", error=str(exc))
        return "failed"
    with transaction.atomic():
        triage_apply(case=case, suggestion=suggestion)
        _record_llm(case_id, status="applied")
    return "applied"


@transaction.atomic
def _record_llm(case_id: int, *, status: str, error: str = "") -> None:
    case = Case.objects.select_for_update().only("pk", "triage").filter(pk=case_id).first()
    if case is None:
        return
    record = {
        "status": status,
        "model": settings.TRIAGE_LLM_MODEL,
        "at": timezone.now().isoformat(),
    }
    if error:
        record["error"] = error[:500]
        record["kept"] = TriageSource.RULES.value
    case.triage = {**(case.triage or {}), "llm": record}
    case.save(update_fields=["triage"])


SYSTEM_PROMPT = """You triage customer support emails for a support team (customers write in \
English or German). Answer with one JSON object and nothing else, with exactly these keys:
"priority": one of {priorities};
"category": one of {categories}, or null when none fits;
"sentiment": one of {sentiments};
"summary": one paragraph of at most 400 characters, in the language of the email, saying what \
the customer wants.
Priority: urgent when a service is down, data is lost or a deadline is today; high when the \
customer is blocked or angry; low for questions and suggestions without time pressure; else \
normal."""


def _ask_llm(*, subject: str, body: str, categories: list[str]) -> str:
    """The model's answer text, or LlmError (timeout, connection, HTTP status, bad body)."""
    prompt = SYSTEM_PROMPT.format(
        priorities=json.dumps(Priority.values),
        categories=json.dumps(categories, ensure_ascii=False),
        sentiments=json.dumps(RULE_SENTIMENTS),
    )
    email = f"Subject: {subject}\n\n{clean_body(body, limit=LLM_BODY_CHARS)}"
    headers = {"Content-Type": "application/json"}
    if settings.TRIAGE_LLM_API_KEY:
        headers["Authorization"] = f"Bearer {settings.TRIAGE_LLM_API_KEY}"
    timeout = settings.TRIAGE_LLM_TIMEOUT_SECONDS
    try:
        response = requests.post(
            settings.TRIAGE_LLM_URL.rstrip("/") + "/chat/completions",
            json={
                "model": settings.TRIAGE_LLM_MODEL,
                "temperature": 0,
                "response_format": {"type": "json_object"},
                "messages": [
                    {"role": "system", "content": prompt},
                    {"role": "user", "content": email},
                ],
            },
            headers=headers,
            timeout=timeout,
        )
    except requests.Timeout:
        raise LlmError(f"no answer within {timeout:g} s") from None
    except requests.RequestException as exc:
        raise LlmError(f"request failed: {type(exc).__name__}") from None
    if response.status_code != 200:
        raise LlmError(f"HTTP {response.status_code}: {response.text[:200]}")
    try:
        return response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise LlmError("the response is not a chat completion") from None


def parse_llm_answer(answer: object, *, categories: Mapping[str, int]) -> Suggestion:
    """The model's answer as a Suggestion, or LlmError naming the first thing wrong with it.

    Strict: all four keys, each value one of those offered (a category matched ignoring
    case), a non-empty summary (shortened to `LLM_SUMMARY_CHARS`).
    """
    if not isinstance(answer, str):
        raise LlmError("the answer is not text")
    text = answer.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, re.DOTALL)
    try:
        data = json.loads(fenced.group(1) if fenced else text)
    except ValueError:
        raise LlmError(f"the answer is not JSON: {text[:100]!r}") from None
    if not isinstance(data, dict):
        raise LlmError("the answer is not a JSON object")
    missing = [key for key in ("priority", "category", "sentiment", "summary") if key not in data]
    if missing:
        raise LlmError(f"the answer lacks {', '.join(missing)}")
    priority, sentiment, summary = data["priority"], data["sentiment"], data["summary"]
    if priority not in Priority.values:
        raise LlmError(f"priority {priority!r} is not one of {', '.join(Priority.values)}")
    if sentiment not in RULE_SENTIMENTS:
        raise LlmError(f"sentiment {sentiment!r} is not allowed")
    category_name, category_id = _llm_category(data["category"], categories)
    if not isinstance(summary, str) or not summary.strip():
        raise LlmError("the summary is empty")
    return Suggestion(
        priority=priority,
        sentiment=sentiment,
        category_id=category_id,
        category_name=category_name,
        summary=_shorten(" ".join(summary.split()), LLM_SUMMARY_CHARS),
        source=TriageSource.LLM.value,
        model=settings.TRIAGE_LLM_MODEL,
    )


def _llm_category(value: object, categories: Mapping[str, int]) -> tuple[str, int | None]:
    if value is None or value == "":
        return "", None
    if isinstance(value, str):
        by_folded = {name.casefold(): name for name in categories}
        name = by_folded.get(value.strip().casefold())
        if name is not None:
            return name, categories[name]
    raise LlmError(f"category {value!r} is not one of the active categories")


# --- rule validation (the admin form and the loader share it) ---------------------------------


def triage_rule_validate(
    *,
    field: str,
    match_type: str,
    pattern: str,
    where: str,
    value: str,
    category: Category | None,
    weight: int,
) -> None:
    """Raise TriageError (naming the form field) unless the rule can be compiled and votes
    for a value its field accepts."""
    _validate_target(field=field, value=value, category=category)
    if not 1 <= (weight or 0) <= 100:
        raise TriageError("The weight must be between 1 and 100.", field="weight")
    pattern = pattern or ""
    if not pattern.strip():
        raise TriageError("Enter what to look for.", field="pattern")
    if len(pattern) > MAX_PATTERN:
        raise TriageError(f"At most {MAX_PATTERN} characters.", field="pattern")
    if where == TriageWhere.SENDER_DOMAIN and match_type == TriageMatch.PHRASE:
        raise TriageError(
            "Match the sender's domain with keywords (domains) or a regular expression.",
            field="match_type",
        )
    if match_type == TriageMatch.REGEX:
        _validate_regex(pattern)
    elif match_type == TriageMatch.KEYWORDS:
        _validate_keywords(pattern, domains=where == TriageWhere.SENDER_DOMAIN)
    elif not TOKEN.search(pattern):
        raise TriageError("A phrase needs at least one word.", field="pattern")


def _validate_target(*, field: str, value: str, category: Category | None) -> None:
    if field == TriageField.CATEGORY:
        if category is None:
            raise TriageError("Choose the category this rule suggests.", field="category")
        if value:
            raise TriageError("A category rule takes a category, not a value.", field="value")
        return
    if field not in (TriageField.PRIORITY, TriageField.SENTIMENT):
        raise TriageError(f"“{field}” is not a field triage sets.", field="field")
    if category is not None:
        raise TriageError("Only category rules take a category.", field="category")
    allowed = Priority.values if field == TriageField.PRIORITY else list(RULE_SENTIMENTS)
    if value not in allowed:
        raise TriageError(f"A {field} rule suggests one of: {', '.join(allowed)}.", field="value")


def _validate_regex(pattern: str) -> None:
    if len(pattern) > MAX_REGEX:
        raise TriageError(f"A regular expression has at most {MAX_REGEX} characters.",
                          field="pattern")  # fmt: skip
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as exc:
        raise TriageError(f"Not a valid regular expression: {exc}.", field="pattern") from None
    if compiled.search(""):
        raise TriageError(
            "This regular expression matches empty text, so it would match every message.",
            field="pattern",
        )


def _validate_keywords(pattern: str, *, domains: bool) -> None:
    keywords = split_keywords(pattern)
    if not keywords:
        raise TriageError("Enter at least one keyword.", field="pattern")
    for keyword in keywords:
        if len(keyword) > MAX_KEYWORD:
            raise TriageError(f"“{keyword[:30]}…” is too long.", field="pattern")
        if domains:
            if not DOMAIN.match(keyword.casefold().lstrip(".")):
                raise TriageError(f"“{keyword}” is not a domain.", field="pattern")
            continue
        stem = keyword.removesuffix("*")
        if "*" in stem:
            raise TriageError(
                f"“{keyword}”: * may only end a keyword (refund* matches refunds).",
                field="pattern",
            )
        if keyword.endswith("*") and len(stem) < 3:
            raise TriageError(f"“{keyword}”: at least 3 letters before *.", field="pattern")
        if not TOKEN.search(stem):
            raise TriageError(f"“{keyword}” has no letters or digits.", field="pattern")


# --- the defaults ------------------------------------------------------------------------------

DEFAULT_CATEGORIES = ("Billing", "Incident", "Account", "Feature request", "Cancellation")

# (field, match, pattern, where, value or category, weight, order, note)
DEFAULT_RULES: tuple[tuple[str, str, str, str, str, int, int, str], ...] = (
    ("priority", "keywords",
     "urgent*, asap, emergency, immediately, critical, dringend*, eilt, eilig*, notfall*, "
     "sofort, kritisch*", "both", "urgent", 5, 10, "urgency words (EN, DE)"),
    ("priority", "keywords",
     "outage*, down, offline, broken, crash*, ausfall*, störung*, kaputt, abgestürzt",
     "both", "high", 2, 20, "outage words (EN, DE)"),
    ("priority", "regex", r"^\W*(?:urgent|dringend|eilt|asap)\b", "subject", "urgent", 3, 5,
     "the subject starts with an urgency word"),
    ("priority", "keywords",
     "not working, doesn't work, does not work, stopped working, no longer works, "
     "can't log in, cannot log in, can't connect, cannot connect, funktioniert nicht, "
     "geht nicht, läuft nicht, lädt nicht, keine verbindung",
     "both", "high", 2, 30, "something stopped working (EN, DE)"),
    ("priority", "keywords",
     "lawyer, legal action, chargeback, anwalt, rechtliche schritte, rückbuchung",
     "body", "high", 3, 40, "legal threats (EN, DE)"),
    ("priority", "keywords",
     "no rush, whenever you can, when you have time, suggestion, feature request, keine eile, "
     "wenn sie zeit haben, vorschlag, anregung",
     "both", "low", 2, 50, "no time pressure (EN, DE)"),
    ("category", "keywords",
     "invoice*, refund*, charge*, billing, payment*, paid, vat, credit note, rechnung*, "
     "erstattung*, gutschrift*, zahlung*, bezahl*, abbuchung*, mahnung*, lastschrift*, mwst, "
     "ust", "both", "Billing", 2, 10, "money (EN, DE)"),
    ("category", "keywords",
     "outage*, down, offline, not working, crash*, error 5*, ausfall*, störung*, "
     "funktioniert nicht, nicht erreichbar, abgestürzt",
     "both", "Incident", 3, 20, "outages (EN, DE): outweigh a mention of money"),
    ("category", "keywords",
     "password*, login, log in, sign in, locked out, 2fa, two-factor, account*, passwort*, "
     "anmeld*, zugang*, gesperrt, konto*",
     "both", "Account", 1, 30, "access (EN, DE)"),
    ("category", "keywords",
     "feature request, would be great if, would be nice, please add, suggestion, wäre schön, "
     "wäre toll, vorschlag, anregung, wunsch",
     "both", "Feature request", 2, 40, "wishes (EN, DE)"),
    ("category", "keywords",
     "cancel*, terminate, termination, unsubscribe, kündig*, vertrag beenden, abmelden",
     "both", "Cancellation", 2, 50, "leaving (EN, DE)"),
    ("sentiment", "keywords",
     "angry, furious, disappointed, unacceptable, terrible, awful, frustrat*, ridiculous, "
     "worst, complaint, scandal*, verärgert, enttäuscht, inakzeptabel, unzumutbar, ärgerlich, "
     "frechheit, beschwerde, katastroph*, sauer, unverschämt",
     "both", "negative", 2, 10, "anger and disappointment (EN, DE)"),
    ("sentiment", "keywords",
     "thank*, great, excellent, appreciate*, love, awesome, perfect, danke*, dankbar, super, "
     "toll, hervorragend, zufrieden, prima, klasse",
     "both", "positive", 1, 20, "thanks and praise (EN, DE)"),
    ("sentiment", "keywords",
     "thanks in advance, thank you in advance, danke im voraus, vielen dank im voraus, "
     "danke vorab",
     "body", "neutral", 2, 30, "politeness, not praise (EN, DE)"),
)  # fmt: skip


def triage_seed_defaults(*, apps: Any = global_apps) -> int:
    """Create the default categories and rules when there are none at all (a new install,
    or a flushed test database); returns the number of rules created. `apps` is a
    migration's historical registry or the real one."""
    category_model = apps.get_model("cases", "Category")
    rule_model = apps.get_model("cases", "TriageRule")
    if category_model.objects.exists() or rule_model.objects.exists():
        return 0
    categories = {name: category_model.objects.create(name=name) for name in DEFAULT_CATEGORIES}
    rule_model.objects.bulk_create(
        rule_model(
            field=field_name, match_type=match, pattern=pattern, where=where,
            value="" if field_name == "category" else target,
            category=categories[target] if field_name == "category" else None,
            weight=weight, order=order, note=note,
        )
        for field_name, match, pattern, where, target, weight, order, note in DEFAULT_RULES
    )  # fmt: skip
    if apps is global_apps:
        triage_rules_changed()
    return len(DEFAULT_RULES)
