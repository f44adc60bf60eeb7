"""Read queries of the mail app: who sees which mailbox, and the messages in them.

Agents see their own mailboxes and their teams' mailboxes; admins see all. Messages waiting to
be settled after leaving a folder (no folder) are not listed anywhere.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.contrib.postgres.search import (
    SearchQuery,
    SearchRank,
    TrigramSimilarity,
    TrigramWordSimilarity,
)
from django.db import connection, transaction
from django.db.models import F, FloatField, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import Cast, Greatest, Lower
from django.utils import timezone

from crm import selectors as crm_selectors
from crm.db import is_postgresql
from crm.models import User
from mailsync.choices import FlagStatus, Importance, MailboxKind, WellKnownFolder
from mailsync.models import Mailbox, MailFolder, Message, RecipientStat


def mailbox_list(*, user: User) -> QuerySet[Mailbox]:
    if not user.is_authenticated or not user.is_active:
        return Mailbox.objects.none()
    if crm_selectors.user_is_admin(user):
        return Mailbox.objects.all()
    return Mailbox.objects.filter(Q(owner=user) | Q(team_id__in=crm_selectors.user_team_ids(user)))


def mailbox_find(*, user: User, key: str) -> Mailbox | None:
    """By id or address, among the mailboxes `user` sees."""
    return mailbox_list(user=user).filter(_mailbox_key(key)).first()


def _mailbox_key(key: str) -> Q:
    key = key.strip()
    return Q(pk=int(key)) if _is_id(key) else Q(address__iexact=key)


def _is_id(key: str) -> bool:
    """Digits that fit a bigint: anything else is looked up as a name, never a 500."""
    return key.isascii() and key.isdigit() and len(key) <= 18


def folder_find(*, mailbox: Mailbox, key: str) -> MailFolder | None:
    """By id, Graph id, or well-known name (`inbox`, `sentitems`...)."""
    folders = mailbox.folders.all()
    if key.lower() in WellKnownFolder.values:
        return folders.filter(well_known=key.lower()).first()
    if _is_id(key):
        return folders.filter(pk=int(key)).first()
    return folders.filter(graph_id=key).first()


def message_list(*, user: User) -> QuerySet[Message]:
    return Message.objects.filter(mailbox__in=mailbox_list(user=user), folder__isnull=False)


# --- the message list: scope, filters, search and keyset pages --------------------------------
#
# `GET /api/v1/mail/messages` is answered from here. The scope (which mailboxes, which folder)
# is decided first, from the caller's visibility, and carries each mailbox's change number:
# the cache of hot pages (mailsync.cache) keys pages by it. Filters are parsed into canonical
# terms, so that equal requests get equal cache keys, and searches run on the same engine as
# case search (docs/decisions.md "Search").

SEARCH_CONFIG = "english"
MAX_SEARCH_LENGTH = 500
MAX_FILTER_TERMS = 20
BODY_SEARCH_CHARS = 50_000  # what migration 0006's trigger indexes of a body (documented there)


class MessageQueryError(ValueError):
    """A parameter of a message list cannot be used; `field` names it (the API answers 400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class ScopedMailbox:
    """A mailbox in a list's scope, with everything its listed messages depend on besides
    the messages themselves: its address (shown on every message) and its change number."""

    id: int
    address: str
    created_at: datetime
    last_seq: int


@dataclass(frozen=True)
class MessageScope:
    """The mailboxes (all visible to the caller) and the folder a list covers."""

    mailboxes: tuple[ScopedMailbox, ...]
    folder_id: int | None = None

    @property
    def mailbox_ids(self) -> list[int]:
        return [m.id for m in self.mailboxes]


def message_scope(*, user: User, mailbox: str = "", folder: str = "") -> MessageScope:
    """Which mailboxes and folder a list covers: one visible mailbox (by id or address) and
    maybe one of its folders, or every mailbox the user sees.

    Each mailbox's change number is read here, in the same statement as the mailbox and
    before any message is read: a page computed afterwards is at least as new as the numbers
    it will be cached under (mailsync.cache).
    """
    if folder and not mailbox:
        raise MessageQueryError("folder", "A folder needs its mailbox.")
    mailboxes = mailbox_list(user=user)
    if mailbox:
        mailboxes = mailboxes.filter(_mailbox_key(mailbox))
    rows = mailboxes.order_by("pk").values_list(
        "pk", "address", "created_at", "container__last_seq"
    )
    scoped = tuple(ScopedMailbox(*row) for row in rows)
    if mailbox and not scoped:
        raise MessageQueryError("mailbox", "No such mailbox.")
    folder_id = None
    if folder:
        found = _folder_id(mailbox_id=scoped[0].id, key=folder)
        if found is None:
            raise MessageQueryError("folder", "No such folder.")
        folder_id = found
    return MessageScope(mailboxes=scoped[:1] if mailbox else scoped, folder_id=folder_id)


def _folder_id(*, mailbox_id: int, key: str) -> int | None:
    folders = MailFolder.objects.filter(mailbox_id=mailbox_id)
    key = key.strip()
    if key.lower() in WellKnownFolder.values:
        folders = folders.filter(well_known=key.lower())
    elif _is_id(key):
        folders = folders.filter(pk=int(key))
    else:
        folders = folders.filter(graph_id=key)
    return folders.values_list("pk", flat=True).first()


# Extra filters other apps add (cases adds `case:`), since this app may not import them.
# A filter function narrows the messages for a value and the caller, and raises ValueError
# with a human message for a value it cannot use.
MessageFilterFunction = Callable[[QuerySet[Message], str, User], QuerySet[Message]]


@dataclass(frozen=True)
class RegisteredFilter:
    name: str
    apply: MessageFilterFunction
    cacheable: bool
    help_text: str


_REGISTERED_FILTERS: dict[str, RegisteredFilter] = {}


def register_message_filter(
    name: str, function: MessageFilterFunction, *, cacheable: bool = False, help_text: str = ""
) -> None:
    """Add a `name:value` term to the message list's `filter` parameter.

    `cacheable` says that what the filter selects changes only when the messages change (so a
    mailbox's change number covers it); a filter that reads another app's rows (the case a
    message belongs to) is not, and lists using it bypass the page cache. Registering a name
    again replaces the earlier function (an app's `ready()` may run twice in tests).
    """
    key = name.lower()
    if key in BUILT_IN_FILTERS:
        raise ValueError(f"'{name}' is a built-in message filter.")
    _REGISTERED_FILTERS[key] = RegisteredFilter(key, function, cacheable, help_text)


def message_filter_names() -> list[str]:
    """Every term the `filter` parameter accepts, for error messages and the API docs."""
    return [*BUILT_IN_FILTERS, *sorted(_REGISTERED_FILTERS)]


@dataclass(frozen=True)
class MessageFilter:
    """One parsed term: `value` is canonical (a lowercased address, a UTC instant), so equal
    requests make equal cache keys."""

    name: str
    value: str
    condition: Callable[[QuerySet[Message]], QuerySet[Message]]
    cacheable: bool = True

    @property
    def term(self) -> str:
        return f"{self.name}:{self.value}" if self.value else self.name


def message_filters_parse(raw: str, *, user: User) -> list[MessageFilter]:
    """`unread,flagged,from:anna@example.com,since:2026-11-01,case:CASE-000123` → filters.

    Terms are separated by commas and all must hold. Names are case-insensitive; a value
    follows the first colon. Dates are days in the caller's time zone (their profile); an
    instant may be given in ISO 8601 with an offset. A term that cannot be used raises
    MessageQueryError naming the `filter` parameter.
    """
    terms = [term.strip() for term in raw.split(",") if term.strip()]
    if len(terms) > MAX_FILTER_TERMS:
        raise MessageQueryError("filter", f"At most {MAX_FILTER_TERMS} filter terms.")
    filters = [_filter_parse(term, user) for term in terms]
    return sorted(filters, key=lambda f: (f.name, f.value))


def _filter_parse(term: str, user: User) -> MessageFilter:
    name, has_value, value = term.partition(":")
    name, value = name.strip().lower(), value.strip()
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise MessageQueryError("filter", f"The value of '{name}' has control characters.")
    built_in = BUILT_IN_FILTERS.get(name)
    if built_in is not None:
        takes_value, parse = built_in
        if takes_value and not value:
            raise MessageQueryError("filter", f"'{name}' needs a value, as in '{name}:…'.")
        if not takes_value and has_value:
            raise MessageQueryError("filter", f"'{name}' takes no value.")
        return parse(name, value, user)
    registered = _REGISTERED_FILTERS.get(name)
    if registered is None:
        known = ", ".join(message_filter_names())
        raise MessageQueryError("filter", f"Unknown filter '{name}'; known filters: {known}.")
    if not value:
        raise MessageQueryError("filter", f"'{name}' needs a value, as in '{name}:…'.")
    try:
        narrowed = registered.apply(Message.objects.all(), value, user)
    except ValueError as exc:
        raise MessageQueryError("filter", f"{name}: {exc}") from None
    ids = narrowed.values("pk")
    return MessageFilter(name, value, lambda qs: qs.filter(pk__in=ids), registered.cacheable)


def _flag_filter(condition: Q) -> Callable[[str, str, User], MessageFilter]:
    return lambda name, value, user: MessageFilter(name, "", lambda qs: qs.filter(condition))


def _address_value(name: str, value: str) -> str:
    value = value.lower()
    local, at, domain = value.rpartition("@")
    if not at or not domain or " " in value or "." not in domain:
        raise MessageQueryError(
            "filter", f"'{name}:' takes an address (anna@example.com) or a domain (@example.com)."
        )
    return value


def _from_filter(name: str, value: str, user: User) -> MessageFilter:
    """The sender's address, or `@domain` for every sender there. On PostgreSQL the search
    vector holds the sender's address and domain (migration 0006), so its GIN index can find
    a rare sender without reading the folder; the exact comparison decides."""
    value = _address_value(name, value)
    if value.startswith("@"):
        exact = Q(from_address__endswith=value)
        indexed = value[1:]
    else:
        exact, indexed = Q(from_address=value), value

    def condition(qs: QuerySet[Message]) -> QuerySet[Message]:
        # Only with a letter or digit: a query of punctuation alone has no lexemes and
        # would match nothing, not everything.
        if is_postgresql() and any(ch.isascii() and ch.isalnum() for ch in indexed):
            qs = qs.filter(search_vector=SearchQuery(indexed, search_type="plain", config="simple"))
        return qs.filter(exact)

    return MessageFilter(name, value, condition)


def _to_filter(name: str, value: str, user: User) -> MessageFilter:
    """A recipient in To or Cc, by address or `@domain`. Addresses are stored lowercased in
    JSON lists of {"name", "address"}; the text of the list is matched, which works alike on
    PostgreSQL and SQLite. No index serves it: it reads the folder until a page is full."""
    value = _address_value(name, value)
    needle = f'{value}"' if value.startswith("@") else f'"{value}"'
    condition = Q(to__icontains=needle) | Q(cc__icontains=needle)
    return MessageFilter(name, value, lambda qs: qs.filter(condition))


def _date_filter(name: str, value: str, user: User) -> MessageFilter:
    """`since:` (from that moment or the start of that day) and `until:` (before that moment,
    or to the end of that day), in the caller's time zone unless an offset is given."""
    zone = crm_selectors.agent_timezone(user)
    try:
        if len(value) == 10:
            day = date.fromisoformat(value)
            start = datetime.combine(day, time.min, tzinfo=zone)
            instant = start if name == "since" else start + timedelta(days=1)
        else:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=zone)
        instant = instant.astimezone(UTC)
    except (ValueError, OverflowError):
        raise MessageQueryError(
            "filter", f"'{name}:' takes a date (2026-11-01) or an ISO 8601 time."
        ) from None
    lookup = "received_at__gte" if name == "since" else "received_at__lt"
    return MessageFilter(name, instant.isoformat(), lambda qs: qs.filter(**{lookup: instant}))


def _importance_filter(name: str, value: str, user: User) -> MessageFilter:
    value = value.lower()
    if value not in Importance.values:
        raise MessageQueryError(
            "filter", f"'importance:' takes one of {', '.join(Importance.values)}."
        )
    return MessageFilter(name, value, lambda qs: qs.filter(importance=value))


# name → (takes a value, parser)
BUILT_IN_FILTERS: dict[str, tuple[bool, Callable[[str, str, User], MessageFilter]]] = {
    "unread": (False, _flag_filter(Q(is_read=False))),
    "read": (False, _flag_filter(Q(is_read=True))),
    "flagged": (False, _flag_filter(Q(flag_status=FlagStatus.FLAGGED))),
    "hasattachments": (False, _flag_filter(Q(has_attachments=True))),
    "from": (True, _from_filter),
    "to": (True, _to_filter),
    "since": (True, _date_filter),
    "until": (True, _date_filter),
    "importance": (True, _importance_filter),
}


class SearchMode:
    """How a list is ordered: by date, by full-text rank, or by trigram similarity."""

    DATE = "d"
    RANK = "r"
    FUZZY = "f"


@dataclass(frozen=True)
class PagePosition:
    """Where a page ended: the last message's sort key (rank only when searching)."""

    mode: str
    received_at: datetime
    pk: int
    rank: float | None = None


@dataclass(frozen=True)
class MessagePage:
    messages: list[Message]
    next_position: PagePosition | None


SUMMARY_FIELDS = (
    "mailbox__address", "folder__well_known", "subject", "from_address", "from_name", "to",
    "received_at", "has_attachments", "preview", "is_read", "importance", "flag_status",
    "categories", "conversation_id",
)  # fmt: skip


def message_search_mode_fits(mode: str, search: str) -> bool:
    """Whether a page token's order fits this request: date order without a search (and on
    SQLite), rank or similarity with one on PostgreSQL."""
    if not search or not is_postgresql():
        return mode == SearchMode.DATE
    return mode in (SearchMode.RANK, SearchMode.FUZZY)


def message_page(
    *,
    scope: MessageScope,
    filters: list[MessageFilter],
    search: str = "",
    mode: str | None = None,
    position: PagePosition | None = None,
    size: int,
) -> MessagePage:
    """One page of messages in scope, filtered and searched, after `position` (whose order
    `mode` must be; None on a first page, which decides it).

    Without a search: newest first. Over several mailboxes each mailbox's first `size + 1`
    messages are read through its (mailbox, received_at) index and merged, so the cost does
    not grow with the mailboxes' sizes.

    With a search on PostgreSQL: best match first among the SEARCH_WINDOW newest matches
    (`_search_window`); only when nothing matches (a misspelling) does it fall back to
    trigram similarity with the subject, as a whole (`%`) or where it comes closest to the
    words typed (`<%`, for long subjects), unless the query uses search operators (the agent
    asked precisely). On SQLite every word must be contained, newest first.
    """
    messages = _scoped(scope)
    for message_filter in filters:
        messages = message_filter.condition(messages)
    if search and is_postgresql():
        return _ranked_page(messages, scope, search, mode, position, size)
    for word in search.split():
        messages = messages.filter(
            Q(subject__icontains=word)
            | Q(from_address__icontains=word)
            | Q(from_name__icontains=word)
            | Q(body_text__icontains=word)
        )
    if position is not None:
        messages = messages.filter(_after(position))
    if scope.folder_id is None and len(scope.mailboxes) > 1:
        rows = _merged_newest(messages, scope, size + 1)
    else:
        rows = list(_summaries(messages).order_by("-received_at", "-pk")[: size + 1])
    return _paged(rows, size, SearchMode.DATE)


SEARCH_WINDOW = 1000
# The misspelling fallback compares every subject along the date index until it has found
# this many similar ones: "did you mean" needs a handful, and each row costs a trigram
# comparison (1,000 took 280 ms at a million messages, 200 about a fifth of that).
FUZZY_WINDOW = 200
# Memory for one search's bitmap: at PostgreSQL's default 4 MB a phrase search over a large
# mailbox turns lossy and rechecks tens of thousands of rows (SET LOCAL: this query only).
SEARCH_WORK_MEM = "64MB"


def _ranked_page(
    messages: QuerySet[Message],
    scope: MessageScope,
    search: str,
    mode: str | None,
    position: PagePosition | None,
    size: int,
) -> MessagePage:
    """A page of search results, best first.

    Ranking needs every candidate's vector, so its cost grows with the number of candidates:
    a word found in half a mailbox of 400,000 messages takes seconds to rank in full. The
    candidates are therefore the SEARCH_WINDOW newest matches (each mailbox's newest through
    its date index when a word is common, through the GIN index when it is rare), ranked
    among themselves: a search that matches fewer messages is ranked in full, a broader one
    ranks its most recent matches, which is where a mail search's answer usually is. Pages
    follow that ranked window; narrowing the search (words, `from:`, `since:`, a folder)
    reaches older messages.
    """
    if mode is None:
        mode = SearchMode.RANK
        candidates = _search_window(messages, scope, search, mode)
        if not candidates and not _uses_operators(search):
            mode = SearchMode.FUZZY
            candidates = _search_window(messages, scope, search, mode)
    else:
        candidates = _search_window(messages, scope, search, mode)
    ranked = Message.objects.filter(pk__in=candidates).annotate(rank=_score(search, mode))
    if position is not None:
        ranked = ranked.filter(_after(position))
    rows = list(_summaries(ranked).order_by("-rank", "-received_at", "-pk")[: size + 1])
    return _paged(rows, size, mode)


def _matches(search: str, mode: str) -> Q:
    if mode == SearchMode.RANK:
        return Q(search_vector=_websearch(search))
    return Q(subject__trigram_similar=search) | Q(subject__trigram_word_similar=search)


def _score(search: str, mode: str) -> Cast:
    """The rank as double precision: exact, so the rank a page token carries compares equal
    to the row's again (`real` reaches Python rounded to its shortest text)."""
    if mode == SearchMode.RANK:
        score = SearchRank(F("search_vector"), _websearch(search))
    else:
        score = Greatest(
            TrigramSimilarity("subject", search), TrigramWordSimilarity(search, "subject")
        )
    return Cast(score, FloatField())


def _search_window(
    messages: QuerySet[Message], scope: MessageScope, search: str, mode: str
) -> list[int]:
    """Ids of the newest messages that match (SEARCH_WINDOW, or FUZZY_WINDOW for the
    misspelling fallback): one query, a UNION ALL of each mailbox's newest matches when the
    scope has several (no index orders them together)."""
    matches = _matches(search, mode)
    window = SEARCH_WINDOW if mode == SearchMode.RANK else min(FUZZY_WINDOW, SEARCH_WINDOW)
    newest = ("-received_at", "-id")
    if scope.folder_id is not None or len(scope.mailboxes) == 1:
        parts = [messages.filter(matches)]
    else:
        parts = [messages.filter(matches, mailbox_id=m) for m in scope.mailbox_ids]
    parts = [p.order_by(*newest).values_list("id", "received_at")[:window] for p in parts]
    if not parts:
        return []
    rows = parts[0] if len(parts) == 1 else parts[0].union(*parts[1:], all=True).order_by(*newest)
    with transaction.atomic():
        if is_postgresql():
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL work_mem = '{SEARCH_WORK_MEM}'")
        return [pk for pk, _ in rows[:window]]


def _summaries(messages: QuerySet[Message]) -> QuerySet[Message]:
    return messages.select_related("mailbox", "folder").only(*SUMMARY_FIELDS)


def _paged(rows: list[Message], size: int, mode: str) -> MessagePage:
    following = None
    if len(rows) > size:
        last = rows[size - 1]
        following = PagePosition(mode, last.received_at, last.pk, getattr(last, "rank", None))
    return MessagePage(rows[:size], following)


def _scoped(scope: MessageScope) -> QuerySet[Message]:
    messages = Message.objects.filter(folder__isnull=False)
    if scope.folder_id is not None:
        return messages.filter(folder_id=scope.folder_id, mailbox_id=scope.mailboxes[0].id)
    if len(scope.mailboxes) == 1:
        return messages.filter(mailbox_id=scope.mailboxes[0].id)
    return messages.filter(mailbox_id__in=scope.mailbox_ids)


def _websearch(search: str) -> SearchQuery:
    return SearchQuery(search, search_type="websearch", config=SEARCH_CONFIG)


def _uses_operators(search: str) -> bool:
    """Quotes, `-word` or `or` (as in cases.selectors): no fuzzy extras then."""
    words = search.lower().split()
    return '"' in search or "or" in words or any(w.startswith("-") for w in words)


def _after(position: PagePosition) -> Q:
    stamp, pk = position.received_at, position.pk
    older = Q(received_at__lt=stamp) | Q(received_at=stamp, pk__lt=pk)
    if position.rank is None:
        return older
    return Q(rank__lt=position.rank) | (Q(rank=position.rank) & older)


def _merged_newest(messages: QuerySet[Message], scope: MessageScope, limit: int) -> list[Message]:
    """The newest `limit` messages over several mailboxes: each mailbox's newest through its
    index, combined in one UNION ALL, then the winners loaded (two queries in all)."""
    parts = [
        messages.filter(mailbox_id=mailbox_id)
        .order_by("-received_at", "-id")
        .values_list("id", "received_at")[:limit]
        for mailbox_id in scope.mailbox_ids
    ]
    if not parts:
        return []
    newest = parts[0].union(*parts[1:], all=True).order_by("-received_at", "-id")[:limit]
    ids = [pk for pk, _ in newest]
    rows = _summaries(Message.objects.all()).in_bulk(ids)
    return [rows[pk] for pk in ids if pk in rows]


def local_mailboxes_for(*, addresses: list[str]) -> QuerySet[Mailbox]:
    """The CRM-hosted mailboxes among these addresses (compared case-insensitively)."""
    wanted = {address.strip().lower() for address in addresses if address}
    return (
        Mailbox.objects.filter(kind=MailboxKind.LOCAL)
        .alias(address_ci=Lower("address"))
        .filter(address_ci__in=wanted)
    )


def local_addresses() -> list[str]:
    """Every address the SMTP listener accepts mail for, lowercased."""
    return [
        address.lower()
        for address in Mailbox.objects.filter(kind=MailboxKind.LOCAL).values_list(
            "address", flat=True
        )
    ]


def local_sender_mailbox(*, user: User, address: str) -> Mailbox | None:
    """The local mailbox `user` may send as: one they see (their own or a team's)."""
    return (
        mailbox_list(user=user)
        .filter(kind=MailboxKind.LOCAL, address__iexact=address.strip())
        .first()
    )


def mailboxes_stale(*, now: datetime | None = None) -> QuerySet[Mailbox]:
    """Enabled Microsoft 365 mailboxes without a clean round for MAILBOX_SYNC_ALERT_MINUTES
    (a new mailbox counts from when it was connected)."""
    threshold = (now or timezone.now()) - timedelta(minutes=settings.MAILBOX_SYNC_ALERT_MINUTES)
    return Mailbox.objects.filter(kind=MailboxKind.M365, sync_enabled=True).filter(
        Q(last_clean_sync_at__lt=threshold)
        | Q(last_clean_sync_at__isnull=True, created_at__lt=threshold)
    )


def mailboxes_owned(*, user: User) -> QuerySet[Mailbox]:
    """An agent's own mailboxes with their connection health, for their profile."""
    return Mailbox.objects.filter(owner=user).select_related("grant").order_by("address")


# --- sent-mail recipient statistics -----------------------------------------------------------
#
# Kept per (mailbox, address) by mailsync.services.recipient_stats; summed here over the
# mailboxes asked for, one row per address.

RECIPIENT_STAT_FIELDS = ("address", "domain", "sent_to", "sent_cc", "sent_bcc", "sent_total",
                         "first_sent_at", "last_sent_at")  # fmt: skip


def recipient_stats(*, mailbox_ids: Sequence[int]) -> QuerySet:
    """What these mailboxes sent to each address, as dicts with the keys of
    `RECIPIENT_STAT_FIELDS` (counts summed, first and last over all of them), ordered by
    address. No visibility check: callers decide the mailboxes (`recipient_stats_for_user`
    for a user)."""
    return _recipient_stats_over(RecipientStat.objects.filter(mailbox_id__in=list(mailbox_ids)))


def recipient_stats_for_user(*, user: User, mailbox_ids: Sequence[int] | None = None) -> QuerySet:
    """`recipient_stats` over the mailboxes `user` sees (all of them, or those of
    `mailbox_ids` they see), in one query."""
    mailboxes = mailbox_list(user=user)
    if mailbox_ids is not None:
        mailboxes = mailboxes.filter(pk__in=list(mailbox_ids))
    return _recipient_stats_over(RecipientStat.objects.filter(mailbox__in=mailboxes.values("pk")))


def _recipient_stats_over(stats: QuerySet[RecipientStat]) -> QuerySet:
    # The domain follows from the address, so grouping by both is grouping by the address.
    return (
        stats.values("address", "domain")
        .annotate(
            sent_to=Sum("to_count"),
            sent_cc=Sum("cc_count"),
            sent_bcc=Sum("bcc_count"),
            sent_total=Sum("total_count"),
            first_sent_at=Min("first_sent"),
            last_sent_at=Max("last_sent"),
        )
        .order_by("address")
    )


def recipient_mailbox_ids(*, user: User, keys: Sequence[str]) -> list[int]:
    """The ids of the mailboxes named by id or address, all of which `user` must see;
    raises MessageQueryError naming `mailbox` for one they do not (as if it did not exist)."""
    wanted = [key.strip() for key in keys if key.strip()]
    condition = Q(pk__in=[])
    for key in wanted:
        condition |= _mailbox_key(key)
    found = list(mailbox_list(user=user).filter(condition).values_list("pk", "address"))
    for key in wanted:
        if not any(str(pk) == key or address.lower() == key.lower() for pk, address in found):
            raise MessageQueryError("mailbox", f"No such mailbox: {key}.")
    return [pk for pk, _ in found]


@dataclass(frozen=True)
class RecipientStatFilters:
    """The API's filters of the statistics, validated (instants in UTC)."""

    domain: str = ""
    q: str = ""
    min_total: int | None = None
    last_sent_after: datetime | None = None
    last_sent_before: datetime | None = None


def recipient_stats_filter(stats: QuerySet, filters: RecipientStatFilters) -> QuerySet:
    """Narrow `recipient_stats` rows: domain and address text before summing, total and last
    time on the sums."""
    if filters.domain:
        stats = stats.filter(domain=filters.domain)
    if filters.q:
        stats = stats.filter(address__contains=filters.q)
    if filters.min_total is not None:
        stats = stats.filter(sent_total__gte=filters.min_total)
    if filters.last_sent_after is not None:
        stats = stats.filter(last_sent_at__gte=filters.last_sent_after)
    if filters.last_sent_before is not None:
        stats = stats.filter(last_sent_at__lt=filters.last_sent_before)
    return stats


def recipient_instant(value: str, *, user: User) -> datetime:
    """A day (its start in the caller's time zone) or an ISO 8601 time (an offset, else the
    caller's zone) as a UTC instant; ValueError if it is neither."""
    zone = crm_selectors.agent_timezone(user)
    value = value.strip()
    try:
        if len(value) == 10:
            instant = datetime.combine(date.fromisoformat(value), time.min, tzinfo=zone)
        else:
            instant = datetime.fromisoformat(value.replace("Z", "+00:00").replace(" ", "T"))
            if instant.tzinfo is None:
                instant = instant.replace(tzinfo=zone)
        return instant.astimezone(UTC)
    except (ValueError, OverflowError):
        raise ValueError("Give a date (2026-11-01) or an ISO 8601 time.") from None


def recipient_stats_ordered(stats: QuerySet, *, ordering: str) -> QuerySet:
    """By one of `RECIPIENT_STAT_FIELDS` (`-` for descending), then by address."""
    key = ordering.removeprefix("-")
    if key == "address":
        return stats.order_by(F("address").desc() if ordering.startswith("-") else F("address"))
    first = F(key).desc() if ordering.startswith("-") else F(key).asc()
    return stats.order_by(first, "address")


def recipient_stats_after(
    stats: QuerySet, *, ordering: str, value: object, address: str
) -> QuerySet:
    """The rows after (`value`, `address`) in `ordering` (a keyset page's start)."""
    key = ordering.removeprefix("-")
    beyond = "lt" if ordering.startswith("-") else "gt"
    if key == "address":
        return stats.filter(**{f"address__{beyond}": address})
    return stats.filter(Q(**{f"{key}__{beyond}": value}) | Q(**{key: value}, address__gt=address))
