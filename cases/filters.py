"""django-filter FilterSets: every field an agent filters by."""

from __future__ import annotations

import django_filters as filters
from django.db.models import Q, QuerySet

from cases.choices import (
    OPEN_CASE_STATUSES,
    OPEN_TASK_STATUSES,
    CaseStatus,
    CaseType,
    Channel,
    Priority,
    SlaMetric,
    SlaState,
    TaskStatus,
)
from cases.models import Case, Customer, Organization, Task

# Multiple-choice filters default to SELECT DISTINCT, which on a million cases sorts every
# matching row by every column; these filters join nothing, so they cannot duplicate rows.


class CaseFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=CaseStatus.choices, distinct=False)
    priority = filters.MultipleChoiceFilter(choices=Priority.choices, distinct=False)
    type = filters.MultipleChoiceFilter(choices=CaseType.choices, distinct=False)
    channel = filters.MultipleChoiceFilter(choices=Channel.choices, distinct=False)
    is_open = filters.BooleanFilter(method="filter_open", label="Open (not resolved or closed)")
    unassigned = filters.BooleanFilter(field_name="assignee", lookup_expr="isnull")
    # A case has a tag at most once, so this join cannot duplicate rows: no DISTINCT.
    tag = filters.CharFilter(field_name="tags__name", label="Tag name", distinct=False)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")
    updated_after = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="gte")
    updated_before = filters.IsoDateTimeFilter(field_name="updated_at", lookup_expr="lt")
    sla = filters.MultipleChoiceFilter(
        choices=SlaState.choices, method="filter_sla", label="Any SLA target in this state"
    )
    sla_due_before = filters.IsoDateTimeFilter(field_name="sla_due", lookup_expr="lt")

    class Meta:
        model = Case
        fields = ["team", "assignee", "customer", "organization", "parent"]

    def filter_open(self, queryset: QuerySet[Case], name: str, value: bool) -> QuerySet[Case]:
        condition = Q(status__in=OPEN_CASE_STATUSES)
        return queryset.filter(condition if value else ~condition)

    def filter_sla(self, queryset: QuerySet[Case], name: str, value: list[str]) -> QuerySet[Case]:
        if not value:
            return queryset
        condition = Q()
        for metric in SlaMetric.values:
            condition |= Q(**{f"sla_{metric}_state__in": value})
        return queryset.filter(condition)


class TaskFilter(filters.FilterSet):
    status = filters.MultipleChoiceFilter(choices=TaskStatus.choices, distinct=False)
    priority = filters.MultipleChoiceFilter(choices=Priority.choices, distinct=False)
    is_open = filters.BooleanFilter(method="filter_open")
    unassigned = filters.BooleanFilter(field_name="assignee", lookup_expr="isnull")
    due_after = filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="gte")
    due_before = filters.IsoDateTimeFilter(field_name="due_at", lookup_expr="lt")

    class Meta:
        model = Task
        fields = ["case", "assignee", "category"]

    def filter_open(self, queryset: QuerySet[Task], name: str, value: bool) -> QuerySet[Task]:
        condition = Q(status__in=OPEN_TASK_STATUSES)
        return queryset.filter(condition if value else ~condition)


class CustomerFilter(filters.FilterSet):
    email = filters.CharFilter(field_name="emails__email", lookup_expr="iexact")

    class Meta:
        model = Customer
        fields = ["organization", "is_vip"]


class OrganizationFilter(filters.FilterSet):
    domain = filters.CharFilter(field_name="domains__domain", lookup_expr="iexact")

    class Meta:
        model = Organization
        fields = ["tier"]
