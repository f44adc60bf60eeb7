"""Canned responses (macros) through the API: the list an agent picks from, and a macro
rendered for a case (no side effects) or applied to it (its status and tags set, through the
case services, so the timeline records them).

- `GET /api/v1/macros`: the active macros the caller may use (`cases.selectors.macros_for`);
  `team=<id>` or `team=global` narrows them, `case=<id>` keeps those usable on that case.
- `POST /api/v1/cases/{id}/macros/{macro_id}/render` → `{"body", "subject"}`.
- `POST /api/v1/cases/{id}/macros/{macro_id}/apply` → `{"body", "subject", "case"}`.

A case the caller may not see, or a macro they may not use on it (another team's, or
inactive), answers 404 like one that does not exist. A macro that cannot be rendered for the
case is a 400 with `code: macro_render_failed`; a status the case cannot move to is the usual
`invalid_transition` 400, and then nothing is applied.
"""

from __future__ import annotations

import django_filters
from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, generics, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import selectors, services
from cases.api.cases import case_queryset
from cases.api.serializers import CaseSerializer, TeamSummary
from cases.models import CannedResponse, Case
from cases.services.macros import macro_render_subject
from crm.models import Team


class MacroSerializer(serializers.ModelSerializer):
    team_summary = TeamSummary(source="team", read_only=True, allow_null=True)

    class Meta:
        model = CannedResponse
        fields = [
            "id",
            "name",
            "team",
            "team_summary",
            "subject",
            "body",
            "set_status",
            "add_tags",
            "updated_at",
        ]
        read_only_fields = fields


class MacroFilter(django_filters.FilterSet):
    team = django_filters.ModelChoiceFilter(
        queryset=Team.objects.all(),
        null_label="global",
        null_value="global",
        help_text="A team's id, or `global` for the macros of every team.",
    )

    class Meta:
        model = CannedResponse
        fields = ["team"]


class MacroRenderedSerializer(serializers.Serializer):
    body = serializers.CharField(help_text="HTML for the reply's body.")
    subject = serializers.CharField(help_text="Plain text; empty when the macro has none.")


class MacroAppliedSerializer(MacroRenderedSerializer):
    case = CaseSerializer(help_text="The case after the macro's actions.")


LIST_PARAMETERS = [
    OpenApiParameter(
        "case", int, required=False, description="Only the macros usable on this case."
    ),
    OpenApiParameter(
        "team", str, required=False, description="A team's id, or `global` for global macros."
    ),
]


class MacroListView(generics.ListAPIView):
    """The active canned responses the caller may use: the global ones and their teams'."""

    serializer_class = MacroSerializer
    filterset_class = MacroFilter
    ordering_fields = ["name", "updated_at"]
    ordering = ["name"]

    @extend_schema(parameters=LIST_PARAMETERS)
    def get(self, request: Request, *args: object, **kwargs: object) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self) -> QuerySet[CannedResponse]:
        return selectors.macros_for(self.request.user, self._case())

    def _case(self) -> Case | None:
        raw = self.request.query_params.get("case")
        if raw is None or raw == "":
            return None
        case = None
        if raw.isdigit():
            case = selectors.case_list(user=self.request.user).filter(pk=int(raw)).first()
        if case is None:
            raise exceptions.ValidationError({"case": ["No such case."]})
        return case


def _case_and_macro(request: Request, case_id: int, macro_id: int) -> tuple[Case, CannedResponse]:
    case = get_object_or_404(case_queryset(request.user), pk=case_id)
    macro = selectors.macros_for(request.user, case).filter(pk=macro_id).first()
    if macro is None:
        raise exceptions.NotFound("No such canned response for this case.")
    return case, macro


NOT_FOUND = OpenApiResponse(description="No such case, or no such macro usable on it.")
BAD = OpenApiResponse(description="The macro cannot be rendered or applied to this case.")


class MacroRenderView(APIView):
    """The macro's body and subject for this case, with the caller as the agent. Changes
    nothing: the composer shows it for editing."""

    @extend_schema(request=None, responses={200: MacroRenderedSerializer, 400: BAD, 404: NOT_FOUND})
    def post(self, request: Request, case_id: int, macro_id: int) -> Response:
        case, macro = _case_and_macro(request, case_id, macro_id)
        return Response(
            {
                "body": services.macro_render(macro=macro, case=case, agent=request.user),
                "subject": macro_render_subject(macro=macro, case=case, agent=request.user),
            }
        )


class MacroApplyView(APIView):
    """Apply the macro's actions (status, tags) to this case and answer its rendered body
    and the changed case. All or nothing."""

    @extend_schema(request=None, responses={200: MacroAppliedSerializer, 400: BAD, 404: NOT_FOUND})
    def post(self, request: Request, case_id: int, macro_id: int) -> Response:
        case, macro = _case_and_macro(request, case_id, macro_id)
        with transaction.atomic():
            body = services.macro_apply(macro=macro, case=case, actor=request.user)
            subject = macro_render_subject(macro=macro, case=case, agent=request.user)
        case = case_queryset(request.user).get(pk=case.pk)
        return Response({"body": body, "subject": subject, "case": CaseSerializer(case).data})
