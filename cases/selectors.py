"""Read queries of the cases app: the one permission-aware queryset per model.

Every entry point (admin, API, web UI, search, exports, ActiveSync) starts from these, so
"who sees what" is decided here and nowhere else:

- admins see everything;
- everyone else sees the cases of their teams and the cases assigned to them, and the tasks
  of those cases plus tasks assigned to or created by them;
- customers and organizations are visible to every agent.
"""

from __future__ import annotations

from django.contrib.postgres.search import SearchQuery, SearchRank, TrigramSimilarity
from django.db.models import F, Q, QuerySet

from cases.models import (
    CannedResponse,
    Case,
    CaseMessage,
    CaseNote,
    Customer,
    CustomerEmail,
    Organization,
    Task,
    TimelineEvent,
)
from crm import selectors as crm_selectors
from crm.db import equals_ignoring_case, is_postgresql
from crm.models import User


def case_list(*, user: User) -> QuerySet[Case]:
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if crm_selectors.user_is_admin(user):
        return Case.objects.all()
    return Case.objects.filter(Q(team_id__in=crm_selectors.user_team_ids(user)) | Q(assignee=user))


def case_manageable(*, user: User) -> QuerySet[Case]:
    """Cases a user may change in the back office: admins all, leads their teams' cases."""
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if crm_selectors.user_is_admin(user):
        return Case.objects.all()
    return Case.objects.filter(team_id__in=crm_selectors.user_led_team_ids(user))


def case_get_by_number(*, user: User, number: str) -> Case | None:
    """The case with that number; a merged case's number resolves to the case it went into."""
    case = case_list(user=user).filter(number=number.strip().upper()).first()
    while case is not None and case.merged_into_id is not None:
        case = case_list(user=user).filter(pk=case.merged_into_id).first()
    return case


def task_list(*, user: User) -> QuerySet[Task]:
    if not user.is_authenticated or not user.is_active:
        return Task.objects.none()
    if crm_selectors.user_is_admin(user):
        return Task.objects.all()
    team_ids = crm_selectors.user_team_ids(user)
    return Task.objects.filter(
        Q(case__team_id__in=team_ids)
        | Q(case__assignee=user)
        | Q(assignee=user)
        | Q(created_by=user, case__isnull=True)
    )


def task_manageable(*, user: User) -> QuerySet[Task]:
    if not user.is_authenticated or not user.is_active:
        return Task.objects.none()
    if crm_selectors.user_is_admin(user):
        return Task.objects.all()
    return Task.objects.filter(case__team_id__in=crm_selectors.user_led_team_ids(user))


def timeline_for(*, user: User, case: Case) -> QuerySet[TimelineEvent]:
    """A case's timeline, empty unless the user may see the case."""
    if not case_list(user=user).filter(pk=case.pk).exists():
        return TimelineEvent.objects.none()
    return case.timeline.select_related("actor")


def case_messages(*, case: Case) -> QuerySet[CaseMessage]:
    """The messages intake joined to a case (its conversation). Whoever may see the case sees
    them, even without access to the mailbox they came through; callers check the case."""
    return (
        CaseMessage.objects.filter(case=case)
        .select_related("message__mailbox")
        .prefetch_related("message__attachments")
    )


def case_latest_message_id(*, case: Case) -> int | None:
    """The id of the newest message of the case, either way (what a dry run of a message
    trigger looks at when nobody names one)."""
    links = CaseMessage.objects.filter(case=case).order_by("-created_at", "-pk")
    return links.values_list("message_id", flat=True).first()


def note_list(*, user: User) -> QuerySet[CaseNote]:
    return CaseNote.objects.filter(case__in=case_list(user=user))


def customer_list(*, user: User) -> QuerySet[Customer]:
    if not user.is_authenticated or not user.is_active:
        return Customer.objects.none()
    return Customer.objects.all()


def organization_list(*, user: User) -> QuerySet[Organization]:
    if not user.is_authenticated or not user.is_active:
        return Organization.objects.none()
    return Organization.objects.all()


def customer_by_email(address: str) -> Customer | None:
    """The one customer behind a sender address (addresses are unique, case-insensitively)."""
    row = (
        CustomerEmail.objects.filter(equals_ignoring_case("email", address))
        .select_related("customer__organization")
        .first()
    )
    return row.customer if row else None


SEARCH_CONFIG = "english"


def _websearch(query: str) -> SearchQuery:
    return SearchQuery(query, search_type="websearch", config=SEARCH_CONFIG)


def _uses_operators(query: str) -> bool:
    """Quotes, `-word` or `or`: the agent asked precisely, so no fuzzy extras."""
    words = query.lower().split()
    return '"' in query or "or" in words or any(w.startswith("-") for w in words)


def _fuzzy(query: str, field: str) -> Q:
    """Trigram similarity on one field, unless the query uses search operators."""
    if _uses_operators(query):
        return Q(pk__in=[])
    return Q(**{f"{field}__trigram_similar": query})


def case_search(*, user: User, query: str) -> QuerySet[Case]:
    """Visible cases matching `query`, best first.

    On PostgreSQL: full-text search over number, title and description (a trigger-maintained,
    GIN-indexed `search_vector`, websearch syntax: quotes, `or`, `-word`), ranked, plus trigram
    similarity on title and number for misspellings, plus the customer's name or address. On
    SQLite (the embedded default): every word must appear in one of those fields.
    """
    cases = case_list(user=user)
    if not is_postgresql():
        return _contains_all(
            cases,
            query,
            ["number", "title", "description", "customer__name", "customer__emails__email"],
        ).distinct()
    words = _websearch(query)
    customer_ids = Customer.objects.filter(_customer_match(query)).values("pk")
    return (
        cases.filter(
            Q(search_vector=words)
            | _fuzzy(query, "title")
            | Q(number=query.strip().upper())
            | Q(customer_id__in=customer_ids)
        )
        .annotate(
            rank=SearchRank(F("search_vector"), words),
            similarity=TrigramSimilarity("title", query),
        )
        .order_by("-rank", "-similarity", "-updated_at", "-pk")
    )


def _customer_match(query: str) -> Q:
    term = query.strip()
    return (
        Q(search_vector=SearchQuery(term, search_type="websearch", config="simple"))
        | Q(name__trigram_similar=term)
        | Q(emails__email__icontains=term)
    )


def _contains_all(queryset: QuerySet, query: str, fields: list[str]) -> QuerySet:
    for term in query.split():
        condition = Q()
        for field in fields:
            condition |= Q(**{f"{field}__icontains": term})
        queryset = queryset.filter(condition)
    return queryset


def task_search(*, user: User, query: str) -> QuerySet[Task]:
    """Visible tasks matching `query` (full text and trigram on PostgreSQL), best first."""
    tasks = task_list(user=user)
    if not is_postgresql():
        return _contains_all(tasks, query, ["subject", "description", "case__number"])
    words = _websearch(query)
    return (
        tasks.filter(
            Q(search_vector=words)
            | _fuzzy(query, "subject")
            | Q(case__number=query.strip().upper())
        )
        .annotate(
            rank=SearchRank(F("search_vector"), words),
            similarity=TrigramSimilarity("subject", query),
        )
        .order_by("-rank", "-similarity", "-pk")
    )


def customer_search(*, user: User, query: str) -> QuerySet[Customer]:
    """Customers by name (fuzzy), address or organization, best first."""
    customers = customer_list(user=user)
    if not is_postgresql():
        fields = ["name", "emails__email", "organization__name"]
        return _contains_all(customers, query, fields).distinct()
    term = query.strip()
    matching = Customer.objects.filter(
        _customer_match(term) | Q(organization__name__trigram_similar=term)
    ).values("pk")
    return (
        customers.filter(pk__in=matching)
        .annotate(similarity=TrigramSimilarity("name", term))
        .order_by("-similarity", "name", "pk")
    )


def macros_for(user: User, case: Case | None = None) -> QuerySet[CannedResponse]:
    """The active canned responses `user` may use: the global ones and their teams' (admins:
    every team's). For a `case`, only the global ones and those of the case's team, since a
    team's macros speak about that team's work."""
    if not user.is_authenticated or not user.is_active:
        return CannedResponse.objects.none()
    macros = CannedResponse.objects.filter(active=True).select_related("team")
    if not crm_selectors.user_is_admin(user):
        macros = macros.filter(
            Q(team__isnull=True) | Q(team_id__in=crm_selectors.user_team_ids(user))
        )
    if case is not None:
        macros = macros.filter(Q(team__isnull=True) | Q(team_id=case.team_id))
    return macros
