"""Read queries of the cases app: the one permission-aware queryset per model.

Every entry point (admin, API, web UI, search, exports, ActiveSync) starts from these, so
"who sees what" is decided here and nowhere else:

- admins see everything;
- everyone else sees the cases of their teams and the cases assigned to them, and the tasks
  of those cases plus tasks assigned to or created by them;
- customers and organizations are visible to every agent.
"""

from __future__ import annotations

from django.db.models import Q, QuerySet

from cases.models import Case, CaseNote, Customer, CustomerEmail, Organization, Task, TimelineEvent
from crm import selectors as crm_selectors
from crm.models import User


def case_list(*, user: User) -> QuerySet[Case]:
    if not user.is_authenticated or not user.is_active:
        return Case.objects.none()
    if crm_selectors.user_is_admin(user):
        return Case.objects.all()
    return Case.objects.filter(Q(team_id__in=crm_selectors.user_team_ids(user)) | Q(assignee=user))


def case_manageable(*, user: User) -> QuerySet[Case]:
    """Cases a user may change in the back office: admins all, leads their teams' cases."""
    if crm_selectors.user_is_admin(user):
        return Case.objects.all()
    return Case.objects.filter(team_id__in=crm_selectors.user_led_team_ids(user))


def case_get_by_number(*, user: User, number: str) -> Case | None:
    """The case with that number; a merged case's number resolves to the case it went into."""
    case = case_list(user=user).filter(number__iexact=number.strip()).first()
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
    if crm_selectors.user_is_admin(user):
        return Task.objects.all()
    return Task.objects.filter(case__team_id__in=crm_selectors.user_led_team_ids(user))


def timeline_for(*, user: User, case: Case) -> QuerySet[TimelineEvent]:
    """A case's timeline, empty unless the user may see the case."""
    if not case_list(user=user).filter(pk=case.pk).exists():
        return TimelineEvent.objects.none()
    return case.timeline.select_related("actor")


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
        CustomerEmail.objects.filter(email__iexact=address.strip())
        .select_related("customer__organization")
        .first()
    )
    return row.customer if row else None


def case_search(*, user: User, query: str) -> QuerySet[Case]:
    """Cases matching `query` in number, title, description or the customer's name or address.

    A plain containment search; full-text search with ranking replaces it on PostgreSQL.
    """
    terms = query.split()
    cases = case_list(user=user)
    for term in terms:
        cases = cases.filter(
            Q(number__icontains=term)
            | Q(title__icontains=term)
            | Q(description__icontains=term)
            | Q(customer__name__icontains=term)
            | Q(customer__emails__email__icontains=term)
        )
    return cases.distinct()


def task_search(*, user: User, query: str) -> QuerySet[Task]:
    tasks = task_list(user=user)
    for term in query.split():
        tasks = tasks.filter(
            Q(subject__icontains=term)
            | Q(description__icontains=term)
            | Q(case__number__icontains=term)
        )
    return tasks


def customer_search(*, user: User, query: str) -> QuerySet[Customer]:
    customers = customer_list(user=user)
    for term in query.split():
        customers = customers.filter(
            Q(name__icontains=term)
            | Q(emails__email__icontains=term)
            | Q(organization__name__icontains=term)
        )
    return customers.distinct()
