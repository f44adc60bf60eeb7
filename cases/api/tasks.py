"""/api/v1/tasks: CRUD, status, assignment, stats and search."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors, services
from cases.api.serializers import TaskAssignSerializer, TaskSerializer, TaskStatusSerializer
from cases.choices import OPEN_TASK_STATUSES
from cases.filters import TaskFilter
from cases.models import Case, Task
from cases.services.tasks import UPDATABLE_FIELDS


def task_queryset(user) -> QuerySet[Task]:
    return (
        selectors.task_list(user=user)
        .select_related("assignee", "case")
        .prefetch_related("checklist")
    )


def create_task(request: Request, *, case: Case | None, context: dict) -> Response:
    """Create a task (on `case`, or on the case named in the body) through the service."""
    body = TaskSerializer(data=request.data, context=context)
    body.is_valid(raise_exception=True)
    data = dict(body.validated_data)
    data.pop("status", None)
    target = case or data.pop("case", None)
    data.pop("case", None)
    if (
        target is not None
        and not selectors.case_list(user=request.user).filter(pk=target.pk).exists()
    ):
        raise exceptions.ValidationError({"case": [f'Invalid pk "{target.pk}".']})
    checklist = [item["text"] for item in data.pop("checklist", [])]
    task = services.task_create(actor=request.user, case=target, checklist=checklist, **data)
    fresh = task_queryset(request.user).get(pk=task.pk)
    return Response(TaskSerializer(fresh, context=context).data, status=status.HTTP_201_CREATED)


class TaskViewSet(viewsets.ModelViewSet):
    """Tasks visible to the caller: those of their teams' cases, and their own."""

    serializer_class = TaskSerializer
    filterset_class = TaskFilter
    ordering_fields = ["due_at", "created_at", "updated_at", "priority", "status"]
    ordering = ["-updated_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Task]:
        return task_queryset(self.request.user)

    def create(self, request: Request, *args, **kwargs) -> Response:
        return create_task(request, case=None, context=self.get_serializer_context())

    def perform_update(self, serializer: TaskSerializer) -> None:
        task, data, actor = serializer.instance, serializer.validated_data, self.request.user
        if "case" in data and data["case"] != task.case:
            raise exceptions.ValidationError({"case": ["A task cannot move to another case."]})
        with transaction.atomic():
            plain = {k: v for k, v in data.items() if k in UPDATABLE_FIELDS}
            services.task_update(actor=actor, task=task, **plain)
            if "checklist" in data:
                items = [(item["text"], item.get("done", False)) for item in data["checklist"]]
                services.task_set_checklist(actor=actor, task=task, items=items)
            if "assignee" in data:
                services.task_assign(actor=actor, task=task, assignee=data["assignee"])
            if "status" in data:
                services.task_change_status(actor=actor, task=task, status=data["status"])
        serializer.instance = task_queryset(actor).get(pk=task.pk)

    def perform_destroy(self, task: Task) -> None:
        services.task_delete(actor=self.request.user, task=task)

    def _respond(self, task: Task) -> Response:
        fresh = task_queryset(self.request.user).get(pk=task.pk)
        return Response(TaskSerializer(fresh, context=self.get_serializer_context()).data)

    @extend_schema(request=TaskStatusSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["patch"], url_path="status")
    def change_status(self, request: Request, pk: str | None = None) -> Response:
        task = self.get_object()
        body = TaskStatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.task_change_status(
            actor=request.user, task=task, status=body.validated_data["status"]
        )
        return self._respond(task)

    @extend_schema(request=TaskAssignSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["patch"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        task = self.get_object()
        body = TaskAssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.task_assign(
            actor=request.user, task=task, assignee=body.validated_data["assignee"]
        )
        return self._respond(task)

    @extend_schema(responses=OpenApiResponse(description="Counts of the caller's tasks."))
    @action(detail=False, methods=["get"])
    def stats(self, request: Request) -> Response:
        tasks = self.filter_queryset(selectors.task_list(user=request.user)).order_by()
        open_tasks = Q(status__in=OPEN_TASK_STATUSES)
        totals = tasks.aggregate(
            total=Count("pk"),
            open=Count("pk", filter=open_tasks),
            overdue=Count("pk", filter=open_tasks & Q(due_at__lt=timezone.now())),
            mine_open=Count("pk", filter=open_tasks & Q(assignee=request.user)),
        )
        by_status = dict(tasks.values_list("status").annotate(n=Count("pk")).order_by("status"))
        return Response({**totals, "by_status": by_status})

    @extend_schema(
        parameters=[OpenApiParameter("q", str, required=True, description="Search words")],
        responses=TaskSerializer(many=True),
    )
    @action(detail=False, methods=["get"])
    def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            raise exceptions.ValidationError({"q": ["Give words to search for."]})
        found = selectors.task_search(user=request.user, query=query)
        found = self.filter_queryset(
            found.select_related("assignee", "case").prefetch_related("checklist")
        )
        page = self.paginate_queryset(found)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)
