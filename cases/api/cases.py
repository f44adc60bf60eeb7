"""/api/v1/cases: CRUD, status, assignment, merge, links, notes, timeline, bulk changes."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import Count, Q, QuerySet
from drf_spectacular.utils import (
    OpenApiExample,
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    extend_schema_view,
)
from rest_framework import exceptions, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors, services
from cases.api.replies import forward_schema, reply_schema, send_from_case
from cases.api.serializers import (
    AssignSerializer,
    BulkAssignSerializer,
    BulkStatusSerializer,
    CaseMessageSerializer,
    CaseSerializer,
    LinkSerializer,
    MergeSerializer,
    NoteSerializer,
    StatusSerializer,
    TaskSerializer,
    TimelineEventSerializer,
)
from cases.api.tasks import create_task
from cases.choices import OPEN_CASE_STATUSES
from cases.filters import CaseFilter
from cases.models import Case, CaseLink
from cases.services.cases import RELATION_FIELDS, UPDATABLE_FIELDS
from crm import selectors as crm_selectors
from crm.api.pagination import FixedOrderCursorPagination
from crm.errors import ServiceError

SEND_PARSERS = [JSONParser, MultiPartParser, FormParser]


def case_queryset(user) -> QuerySet[Case]:
    return (
        selectors.case_list(user=user)
        .select_related("team", "assignee", "customer", "organization", "category")
        .prefetch_related("tags", "watchers", "customer__emails")
    )


CREATE_EXAMPLE = OpenApiExample(
    "New case",
    value={
        "title": "Invoice shows wrong VAT rate",
        "description": "Our March invoice charges 21% instead of 19%.",
        "team": 2,
        "customer": 15,
        "priority": "high",
        "type": "problem",
        "channel": "email",
        "tags": ["billing", "vat"],
    },
    request_only=True,
)


@extend_schema_view(
    create=extend_schema(examples=[CREATE_EXAMPLE]),
    partial_update=extend_schema(
        examples=[
            OpenApiExample(
                "Escalate and take it",
                value={"priority": "urgent", "assignee": 7, "status": "in_progress"},
                request_only=True,
            )
        ]
    ),
)
class CaseViewSet(viewsets.ModelViewSet):
    """Cases visible to the caller: their teams' cases and cases assigned to them (admins see
    all). A case the caller may not see answers 404, exactly like one that does not exist."""

    serializer_class = CaseSerializer
    filterset_class = CaseFilter
    ordering_fields = ["updated_at", "created_at", "number", "priority", "status", "sla_due"]
    ordering = ["-updated_at"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Case]:
        return case_queryset(self.request.user)

    def _check_team(self, team) -> None:
        user = self.request.user
        if team is not None and not crm_selectors.user_is_admin(user):
            if team.pk not in crm_selectors.user_team_ids(user):
                raise exceptions.ValidationError({"team": ["You are not a member of this team."]})

    def _check_parent(self, parent: Case | None) -> None:
        if (
            parent is not None
            and not selectors.case_list(user=self.request.user).filter(pk=parent.pk).exists()
        ):
            raise exceptions.ValidationError({"parent": [f'Invalid pk "{parent.pk}".']})

    def perform_create(self, serializer: CaseSerializer) -> None:
        data = dict(serializer.validated_data)
        self._check_team(data.get("team"))
        self._check_parent(data.get("parent"))
        wanted_status = data.pop("status", None)
        with transaction.atomic():
            case = services.case_create(actor=self.request.user, **data)
            if wanted_status and wanted_status != case.status:
                services.case_change_status(
                    actor=self.request.user, case=case, status=wanted_status
                )
        serializer.instance = case_queryset(self.request.user).get(pk=case.pk)

    def perform_update(self, serializer: CaseSerializer) -> None:
        case, data, actor = serializer.instance, serializer.validated_data, self.request.user
        self._check_parent(data.get("parent"))
        with transaction.atomic():
            plain = {k: v for k, v in data.items() if k in UPDATABLE_FIELDS + RELATION_FIELDS}
            services.case_update(actor=actor, case=case, **plain)
            if "tags" in data:
                services.case_set_tags(actor=actor, case=case, names=data["tags"])
            if "parent" in data:
                services.case_set_parent(actor=actor, case=case, parent=data["parent"])
            if "team" in data or "assignee" in data:
                self._check_team(data.get("team"))
                assignee = data.get("assignee", case.assignee)
                services.case_assign(
                    actor=actor, case=case, assignee=assignee, team=data.get("team")
                )
            if "status" in data:
                services.case_change_status(actor=actor, case=case, status=data["status"])
        serializer.instance = case_queryset(actor).get(pk=case.pk)

    def perform_destroy(self, case: Case) -> None:
        user = self.request.user
        if not selectors.case_manageable(user=user).filter(pk=case.pk).exists():
            raise exceptions.PermissionDenied("Only admins and the team's leads delete cases.")
        services.case_delete(actor=user, case=case)

    def _sub_list(self, queryset: QuerySet, serializer_class: type, *ordering: str) -> Response:
        paginator = FixedOrderCursorPagination(*ordering)
        page = paginator.paginate_queryset(queryset, self.request, view=self)
        return paginator.get_paginated_response(serializer_class(page, many=True).data)

    def _respond(self, case: Case) -> Response:
        fresh = case_queryset(self.request.user).get(pk=case.pk)
        return Response(CaseSerializer(fresh, context=self.get_serializer_context()).data)

    @extend_schema(
        request=StatusSerializer,
        responses=CaseSerializer,
        examples=[
            OpenApiExample("Resolve", value={"status": "resolved"}, request_only=True),
            OpenApiExample(
                "Refused transition",
                value={
                    "status": ["A resolved case cannot become awaiting customer."],
                    "code": "invalid_transition",
                },
                response_only=True,
                status_codes=["400"],
            ),
        ],
    )
    @action(detail=True, methods=["patch"], url_path="status")
    def change_status(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        body = StatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        services.case_change_status(
            actor=request.user, case=case, status=body.validated_data["status"]
        )
        return self._respond(case)

    @extend_schema(
        request=AssignSerializer,
        responses=CaseSerializer,
        examples=[
            OpenApiExample("To an agent", value={"assignee": 7}, request_only=True),
            OpenApiExample(
                "Round-robin in another team",
                value={"team": 3, "round_robin": True},
                request_only=True,
            ),
        ],
    )
    @action(detail=True, methods=["patch"])
    def assign(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        body = AssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        self._check_team(data.get("team"))
        with transaction.atomic():
            if data.get("team") and data["team"] != case.team and "assignee" not in data:
                services.case_assign(
                    actor=request.user, case=case, assignee=None, team=data["team"]
                )
            if data["round_robin"]:
                if data.get("team"):
                    services.case_assign(
                        actor=request.user, case=case, assignee=None, team=data["team"]
                    )
                services.case_assign_round_robin(actor=request.user, case=case)
            elif "assignee" in data:
                services.case_assign(
                    actor=request.user, case=case, assignee=data["assignee"], team=data.get("team")
                )
        return self._respond(case)

    @extend_schema(
        parameters=[OpenApiParameter("case_number", str, OpenApiParameter.PATH)],
        responses=CaseSerializer,
    )
    @action(detail=False, methods=["get"], url_path=r"number/(?P<case_number>[^/]+)")
    def by_number(self, request: Request, case_number: str) -> Response:
        """A case by its number; the number of a merged case gives the case it went into."""
        case = selectors.case_get_by_number(user=request.user, number=case_number)
        if case is None:
            raise exceptions.NotFound("No such case.")
        return self._respond(case)

    @extend_schema(methods=["GET"], responses=TaskSerializer(many=True))
    @extend_schema(methods=["POST"], request=TaskSerializer, responses=TaskSerializer)
    @action(detail=True, methods=["get", "post"])
    def tasks(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        if request.method == "POST":
            return create_task(request, case=case, context=self.get_serializer_context())
        tasks = case.tasks.select_related("assignee", "case").prefetch_related("checklist")
        return self._sub_list(tasks, TaskSerializer, "-pk")

    @extend_schema(responses=TimelineEventSerializer(many=True))
    @action(detail=True, methods=["get"])
    def timeline(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        events = selectors.timeline_for(user=request.user, case=case)
        return self._sub_list(events, TimelineEventSerializer, "created_at")

    @extend_schema(responses=CaseMessageSerializer(many=True))
    @action(detail=True, methods=["get"])
    def messages(self, request: Request, pk: str | None = None) -> Response:
        """The case's conversation, oldest first: every message intake joined to it."""
        case = self.get_object()
        links = selectors.case_messages(case=case)
        return self._sub_list(links, CaseMessageSerializer, "created_at")

    @extend_schema(request=None, responses={201: TaskSerializer})
    @action(detail=True, methods=["post"], url_path=r"messages/(?P<message_pk>\d+)/task")
    def message_task(
        self, request: Request, pk: str | None = None, message_pk: str = ""
    ) -> Response:
        """Turn one of the case's messages into a task on the case."""
        case = self.get_object()
        link = selectors.case_messages(case=case).filter(message_id=int(message_pk)).first()
        if link is None:
            raise exceptions.NotFound("No such message in this case.")
        try:
            task = services.task_from_message(actor=request.user, message=link.message)
        except ServiceError as exc:
            raise exceptions.ValidationError({"message": [exc.message]}) from exc
        data = TaskSerializer(task, context=self.get_serializer_context()).data
        return Response(data, status=status.HTTP_201_CREATED)

    @reply_schema
    @action(detail=True, methods=["post"], parser_classes=SEND_PARSERS)
    def reply(self, request: Request, pk: str | None = None) -> Response:
        """Reply or reply all to the customer (default: to their latest message), from the
        mailbox they wrote to; the subject carries the case number. Counts as the response."""
        return send_from_case(request, self.get_object(), forward=False)

    @forward_schema
    @action(detail=True, methods=["post"], parser_classes=SEND_PARSERS)
    def forward(self, request: Request, pk: str | None = None) -> Response:
        """Forward one of the case's messages (default: the customer's latest) to others."""
        return send_from_case(request, self.get_object(), forward=True)

    @extend_schema(methods=["GET"], responses=NoteSerializer(many=True))
    @extend_schema(methods=["POST"], request=NoteSerializer, responses=NoteSerializer)
    @action(detail=True, methods=["get", "post"])
    def notes(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        if request.method == "POST":
            body = NoteSerializer(data=request.data)
            body.is_valid(raise_exception=True)
            note = services.case_add_note(
                actor=request.user, case=case, body=body.validated_data["body"]
            )
            return Response(NoteSerializer(note).data, status=status.HTTP_201_CREATED)
        notes = case.notes.select_related("author").prefetch_related("mentions")
        return self._sub_list(notes, NoteSerializer, "-pk")

    @extend_schema(request=MergeSerializer, responses=CaseSerializer)
    @action(detail=True, methods=["post"])
    def merge(self, request: Request, pk: str | None = None) -> Response:
        """Merge this case into `target`; answers with the target."""
        source = self.get_object()
        body = MergeSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        target = body.validated_data["target"]
        if not selectors.case_list(user=request.user).filter(pk=target.pk).exists():
            raise exceptions.ValidationError({"target": [f'Invalid pk "{target.pk}".']})
        services.case_merge(actor=request.user, source=source, target=target)
        return self._respond(target)

    @extend_schema(methods=["GET"], responses=LinkSerializer(many=True))
    @extend_schema(methods=["POST", "DELETE"], request=LinkSerializer, responses=LinkSerializer)
    @action(detail=True, methods=["get", "post", "delete"])
    def links(self, request: Request, pk: str | None = None) -> Response:
        case = self.get_object()
        if request.method == "GET":
            links = CaseLink.objects.filter(Q(from_case=case) | Q(to_case=case)).order_by("pk")
            return Response(LinkSerializer(links, many=True).data)
        body = LinkSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        other = body.validated_data["other"]
        if not selectors.case_list(user=request.user).filter(pk=other.pk).exists():
            raise exceptions.ValidationError({"other": [f'Invalid pk "{other.pk}".']})
        if request.method == "DELETE":
            services.case_unlink(actor=request.user, case=case, other=other)
            return Response(status=status.HTTP_204_NO_CONTENT)
        link = services.case_link(
            actor=request.user, case=case, other=other, kind=body.validated_data["kind"]
        )
        return Response(LinkSerializer(link).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("q", str, required=True, description="Search words")],
        responses=CaseSerializer(many=True),
    )
    @action(detail=False, methods=["get"])
    def search(self, request: Request) -> Response:
        query = request.query_params.get("q", "").strip()
        if not query:
            raise exceptions.ValidationError({"q": ["Give words to search for."]})
        found = selectors.case_search(user=request.user, query=query)
        found = self.filter_queryset(
            found.select_related(
                "team", "assignee", "customer", "organization", "category"
            ).prefetch_related("tags", "watchers", "customer__emails")
        )
        page = self.paginate_queryset(found)
        return self.get_paginated_response(self.get_serializer(page, many=True).data)

    @extend_schema(responses=OpenApiResponse(description="Counts of the caller's cases."))
    @action(detail=False, methods=["get"])
    def stats(self, request: Request) -> Response:
        cases = (
            self.filter_queryset(selectors.case_list(user=request.user))
            .filter(merged_into__isnull=True)
            .order_by()
        )
        totals = cases.aggregate(
            total=Count("pk"),
            open=Count("pk", filter=Q(status__in=OPEN_CASE_STATUSES)),
            unassigned_open=Count(
                "pk", filter=Q(status__in=OPEN_CASE_STATUSES, assignee__isnull=True)
            ),
        )
        return Response(
            {
                **totals,
                "by_status": _counts(cases, "status"),
                "by_priority": _counts(cases.filter(status__in=OPEN_CASE_STATUSES), "priority"),
                "by_team": _counts(cases.filter(status__in=OPEN_CASE_STATUSES), "team__name"),
            }
        )

    @extend_schema(
        request=BulkStatusSerializer,
        responses=OpenApiResponse(description="One result per id, in order."),
        examples=[
            OpenApiExample(
                "Close three cases, each on its own",
                value={"ids": [101, 102, 103], "status": "closed"},
                request_only=True,
            ),
            OpenApiExample(
                "Per-item results",
                value={
                    "results": [
                        {"id": 101, "ok": True},
                        {
                            "id": 102,
                            "ok": False,
                            "error": {"code": "not_found", "message": "No such case."},
                        },
                    ]
                },
                response_only=True,
            ),
        ],
    )
    @action(detail=False, methods=["patch"], url_path="bulk/status")
    def bulk_status(self, request: Request) -> Response:
        body = BulkStatusSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        new_status = body.validated_data["status"]
        return self._bulk(
            body.validated_data,
            lambda case: services.case_change_status(
                actor=request.user, case=case, status=new_status
            ),
        )

    @extend_schema(request=BulkAssignSerializer)
    @action(detail=False, methods=["patch"], url_path="bulk/assign")
    def bulk_assign(self, request: Request) -> Response:
        body = BulkAssignSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if "assignee" not in data and "team" not in data:
            raise exceptions.ValidationError({"assignee": ["Give an assignee, a team or both."]})
        self._check_team(data.get("team"))
        return self._bulk(
            data,
            lambda case: services.case_assign(
                actor=request.user,
                case=case,
                assignee=data.get("assignee", case.assignee),
                team=data.get("team"),
            ),
        )

    def _bulk(self, data: dict[str, Any], change) -> Response:
        """Apply `change` to each case in its own savepoint, or all-or-nothing when atomic."""
        visible = {
            c.pk: c for c in selectors.case_list(user=self.request.user).filter(pk__in=data["ids"])
        }
        results: list[dict[str, Any]] = []

        def run_one(pk: int) -> bool:
            case = visible.get(pk)
            if case is None:
                results.append(
                    {
                        "id": pk,
                        "ok": False,
                        "error": {"code": "not_found", "message": "No such case."},
                    }
                )
                return False
            try:
                with transaction.atomic():
                    change(case)
            except ServiceError as exc:
                results.append(
                    {"id": pk, "ok": False, "error": {"code": exc.code, "message": exc.message}}
                )
                return False
            results.append({"id": pk, "ok": True})
            return True

        if not data["atomic"]:
            for pk in dict.fromkeys(data["ids"]):
                run_one(pk)
            return Response({"results": results})
        try:
            with transaction.atomic():
                for pk in dict.fromkeys(data["ids"]):
                    if not run_one(pk):
                        raise _RollBack
        except _RollBack:
            for result in results:
                if result["ok"]:
                    result.update(
                        ok=False,
                        error={
                            "code": "rolled_back",
                            "message": "Not applied: another item failed.",
                        },
                    )
            return Response({"results": results}, status=status.HTTP_400_BAD_REQUEST)
        return Response({"results": results})


class _RollBack(Exception):
    pass


def _counts(cases: QuerySet[Case], field: str) -> dict[str, int]:
    return dict(cases.values_list(field).annotate(n=Count("pk")).order_by(field))
