"""/api/v1/analytics/...: dashboard, trends, performance and downloadable reports.

Thin views: they validate the query parameters (a 400 with a message per bad parameter, never
a 500), call the aggregate queries in `cases.analytics`, which count only the cases the caller
may see, and render the result as JSON or, for reports, CSV.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, fields
from datetime import UTC, datetime, time
from typing import Any

from django.http import HttpResponse
from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiResponse,
    PolymorphicProxySerializer,
    extend_schema,
    extend_schema_field,
)
from rest_framework import serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import analytics
from cases.analytics import (
    EARLIEST,
    LATEST,
    MAX_PERIOD_DAYS,
    PerformanceGrouping,
    PerformanceRow,
    Period,
    PeriodError,
    TrendBucket,
    TrendGrouping,
    period_between,
)
from crm import selectors as crm_selectors
from crm.api.negotiation import ParameterNamedFormat
from crm.exports import spreadsheet_cell

TAGS = ["analytics"]


# Query parameters -------------------------------------------------------------------------


@extend_schema_field(OpenApiTypes.STR)
class DateOrDateTimeField(serializers.Field):
    """An ISO 8601 date (midnight UTC) or date-time (UTC unless it names an offset)."""

    default_error_messages = {
        "invalid": "Give an ISO 8601 date or date-time, e.g. 2025-01-31 or "
        "2025-01-31T08:00:00Z (write + in an offset as %2B).",
        "range": "Must lie between 1970 and 9000.",
    }

    def to_internal_value(self, data: Any) -> datetime:
        text = data.strip() if isinstance(data, str) else ""
        try:
            parsed = parse_datetime(text)
            if parsed is None and (day := parse_date(text)) is not None:
                parsed = datetime.combine(day, time.min)
            if parsed is None:
                self.fail("invalid")
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            parsed = parsed.astimezone(UTC)
        except (ValueError, OverflowError):
            # Well-formed but impossible (month 13), or beyond what datetime can hold.
            self.fail("invalid")
        if not EARLIEST <= parsed < LATEST:
            self.fail("range")
        return parsed

    def to_representation(self, value: datetime) -> str:
        return value.isoformat()


class PeriodQuerySerializer(serializers.Serializer):
    """`from`, `to` and `team`, which every analytics endpoint takes."""

    team = serializers.IntegerField(
        required=False, min_value=1, help_text="Only this team's cases (a team id)."
    )

    def get_fields(self) -> dict[str, serializers.Field]:
        # `from` is a Python keyword, so it cannot be declared as a class attribute.
        return {
            "from": DateOrDateTimeField(
                required=False,
                help_text="Start of the period, inclusive: an ISO 8601 date or date-time "
                "(UTC unless an offset is given). Default: 30 days before `to`.",
            ),
            "to": DateOrDateTimeField(
                required=False,
                help_text="End of the period, exclusive. Default: the end of today (UTC), so "
                f"the default period is the last 30 days. At most {MAX_PERIOD_DAYS} days "
                "after `from`.",
            ),
            **super().get_fields(),
        }

    def validate_team(self, value: int) -> int:
        user = self.context["request"].user
        if not crm_selectors.team_list(user=user).filter(pk=value).exists():
            raise serializers.ValidationError(f"No team with id {value}.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        # The rule (defaults, order, length) is the web reports' too: analytics.period_between.
        try:
            attrs["period"] = period_between(start=attrs.get("from"), end=attrs.get("to"))
        except PeriodError as exc:
            raise serializers.ValidationError({"from": [str(exc)]}) from exc
        return attrs


class TrendsQuerySerializer(PeriodQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=TrendGrouping.choices, default=TrendGrouping.DAY, help_text="Bucket size (UTC)."
    )


class PerformanceQuerySerializer(PeriodQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=PerformanceGrouping.choices,
        default=PerformanceGrouping.AGENT,
        help_text="One row per agent (current assignee), team, priority, type, channel or "
        "organization.",
    )


class ReportQuerySerializer(PeriodQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=[*TrendGrouping.choices, *PerformanceGrouping.choices],
        default=PerformanceGrouping.TEAM,
        help_text="`day` or `week`: the trends rows; the others: the performance rows.",
    )
    format = serializers.ChoiceField(
        choices=[("json", "JSON"), ("csv", "CSV")],
        default="json",
        help_text="`csv` answers `text/csv` as a file download.",
    )


# Responses --------------------------------------------------------------------------------


class PeriodResultSerializer(serializers.Serializer):
    """The period and team the figures are for, defaults filled in."""

    team = serializers.IntegerField(allow_null=True, help_text="The team filter, if any.")

    def get_fields(self) -> dict[str, serializers.Field]:
        return {
            "from": serializers.DateTimeField(help_text="Start of the period (inclusive)."),
            "to": serializers.DateTimeField(help_text="End of the period (exclusive)."),
            **super().get_fields(),
        }


class TeamOpenSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    open = serializers.IntegerField()


class SinceSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="Start of the UTC day or week (Monday).")
    created = serializers.IntegerField()
    resolved = serializers.IntegerField()


class PeriodCountsSerializer(serializers.Serializer):
    created = serializers.IntegerField()
    resolved = serializers.IntegerField()


class DashboardSerializer(PeriodResultSerializer):
    open = serializers.IntegerField(help_text="Open cases now.")
    unassigned = serializers.IntegerField(help_text="Open cases without an assignee.")
    open_by_status = serializers.DictField(
        child=serializers.IntegerField(), help_text="Open cases per open status."
    )
    open_by_priority = serializers.DictField(
        child=serializers.IntegerField(), help_text="Open cases per priority."
    )
    open_by_team = TeamOpenSerializer(many=True, help_text="Teams with open cases, by name.")
    today = SinceSerializer(help_text="Created and resolved since the start of the UTC day.")
    this_week = SinceSerializer(help_text="Created and resolved since Monday 00:00 UTC.")
    period = PeriodCountsSerializer(help_text="Created and resolved in [from, to).")


class TrendBucketSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="First UTC day of the bucket.")
    created = serializers.IntegerField()
    resolved = serializers.IntegerField()
    backlog = serializers.IntegerField(help_text="Cases open at the end of the bucket.")


class TrendsSerializer(PeriodResultSerializer):
    group_by = serializers.ChoiceField(choices=TrendGrouping.choices)
    buckets = TrendBucketSerializer(many=True)


@extend_schema_field(
    {
        "oneOf": [{"type": "integer"}, {"type": "string"}],
        "nullable": True,
        "description": "Agent or team id, or the priority, type or channel value; "
        "null for unassigned.",
    }
)
class GroupKeyField(serializers.Field):
    def to_representation(self, value: int | str) -> int | str:
        return value


def _seconds(help_text: str) -> serializers.FloatField:
    return serializers.FloatField(allow_null=True, help_text=help_text)


class PerformanceRowSerializer(serializers.Serializer):
    key = GroupKeyField(allow_null=True)
    label = serializers.CharField()
    created = serializers.IntegerField(help_text="Cases created in the period.")
    first_responses = serializers.IntegerField(help_text="Cases first answered in the period.")
    first_response_median_seconds = _seconds("Median of first_response_at - created_at.")
    first_response_p90_seconds = _seconds("90th percentile (linear interpolation).")
    handled = serializers.IntegerField(help_text="Cases resolved or closed in the period.")
    resolution_median_seconds = _seconds("Median of resolved_at - created_at.")
    resolution_p90_seconds = _seconds("90th percentile (linear interpolation).")
    reopened = serializers.IntegerField(help_text="Handled cases that were ever reopened.")
    reopen_rate = serializers.FloatField(allow_null=True, help_text="reopened / handled.")


class PerformanceSerializer(PeriodResultSerializer):
    group_by = serializers.ChoiceField(choices=PerformanceGrouping.choices)
    rows = PerformanceRowSerializer(many=True)


BAD_PARAMETERS = OpenApiResponse(
    response={
        "type": "object",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    description="A bad query parameter: the parameter's name maps to its messages.",
)


# Views ------------------------------------------------------------------------------------


class AnalyticsView(APIView):
    """Shared parameter handling. Subclasses name their query serializer."""

    query_serializer_class: type[PeriodQuerySerializer] = PeriodQuerySerializer

    def query(self, request: Request) -> dict[str, Any]:
        params = self.query_serializer_class(
            data=request.query_params, context={"request": request}
        )
        params.is_valid(raise_exception=True)
        return params.validated_data

    @staticmethod
    def envelope(params: dict[str, Any], **figures: Any) -> dict[str, Any]:
        period: Period = params["period"]
        return {"from": period.start, "to": period.end, "team": params.get("team"), **figures}


class DashboardView(AnalyticsView):
    query_serializer_class = PeriodQuerySerializer

    @extend_schema(
        tags=TAGS,
        operation_id="analytics_dashboard",
        parameters=[PeriodQuerySerializer],
        responses={
            200: OpenApiResponse(DashboardSerializer, description="The dashboard figures."),
            400: BAD_PARAMETERS,
        },
    )
    def get(self, request: Request) -> Response:
        """What is open now (by status, priority, team; unassigned), and what was created and
        resolved today, this week (UTC) and in the period. Only cases the caller may see."""
        params = self.query(request)
        board = analytics.dashboard(
            user=request.user, period=params["period"], team_id=params.get("team")
        )
        return Response(DashboardSerializer(self.envelope(params, **asdict(board))).data)


class TrendsView(AnalyticsView):
    query_serializer_class = TrendsQuerySerializer

    @extend_schema(
        tags=TAGS,
        operation_id="analytics_trends",
        parameters=[TrendsQuerySerializer],
        responses={
            200: OpenApiResponse(TrendsSerializer, description="One bucket per day or week."),
            400: BAD_PARAMETERS,
        },
    )
    def get(self, request: Request) -> Response:
        """Cases created and resolved per UTC day or week of the period, and the backlog
        (cases open) at the end of each."""
        params = self.query(request)
        buckets = analytics.trends(
            user=request.user,
            period=params["period"],
            group_by=params["group_by"],
            team_id=params.get("team"),
        )
        data = self.envelope(params, group_by=params["group_by"], buckets=buckets)
        return Response(TrendsSerializer(data).data)


class PerformanceView(AnalyticsView):
    query_serializer_class = PerformanceQuerySerializer

    @extend_schema(
        tags=TAGS,
        operation_id="analytics_performance",
        parameters=[PerformanceQuerySerializer],
        responses={
            200: OpenApiResponse(PerformanceSerializer, description="One row per group."),
            400: BAD_PARAMETERS,
        },
    )
    def get(self, request: Request) -> Response:
        """Per agent, team, priority, type or channel: cases created, first-response and
        resolution times (median and p90, in seconds), cases handled and the reopen rate."""
        params = self.query(request)
        rows = analytics.performance(
            user=request.user,
            period=params["period"],
            group_by=params["group_by"],
            team_id=params.get("team"),
        )
        data = self.envelope(params, group_by=params["group_by"], rows=rows)
        return Response(PerformanceSerializer(data).data)


TREND_COLUMNS = [f.name for f in fields(TrendBucket)]
PERFORMANCE_COLUMNS = [f.name for f in fields(PerformanceRow)]


class ReportView(AnalyticsView):
    query_serializer_class = ReportQuerySerializer
    renderer_classes = [JSONRenderer]
    content_negotiation_class = ParameterNamedFormat

    @extend_schema(
        tags=TAGS,
        operation_id="analytics_report",
        parameters=[ReportQuerySerializer],
        responses={
            (200, "application/json"): PolymorphicProxySerializer(
                component_name="AnalyticsReport",
                serializers=[TrendsSerializer, PerformanceSerializer],
                resource_type_field_name=None,
            ),
            (200, "text/csv"): OpenApiResponse(
                response=OpenApiTypes.STR,
                description="With `format=csv`: a header row, then one row per bucket "
                f"({', '.join(TREND_COLUMNS)}) or group ({', '.join(PERFORMANCE_COLUMNS)}); "
                "sent as an attachment.",
            ),
            400: BAD_PARAMETERS,
        },
    )
    def get(self, request: Request) -> Response | HttpResponse:
        """The trends (`group_by` day or week) or performance figures (by agent, team,
        priority, type or channel) of a period, as JSON or as a CSV download.

        JSON is the body the trends or performance endpoint gives. CSV (`format=csv`) is sent
        as an attachment: a header row naming the fields of one bucket or row, then one line
        per bucket or group; empty cells are nulls."""
        params = self.query(request)
        group_by, period = params["group_by"], params["period"]
        common = {"user": request.user, "period": period, "team_id": params.get("team")}
        if group_by in TrendGrouping.values:
            rows: list[Any] = analytics.trends(group_by=group_by, **common)
            serializer, key, columns = TrendsSerializer, "buckets", TREND_COLUMNS
        else:
            rows = analytics.performance(group_by=group_by, **common)
            serializer, key, columns = PerformanceSerializer, "rows", PERFORMANCE_COLUMNS
        if params["format"] == "csv":
            return csv_response(
                [asdict(row) for row in rows], columns=columns, filename=_filename(params)
            )
        data = self.envelope(params, group_by=group_by, **{key: rows})
        return Response(serializer(data).data)


def _filename(params: dict[str, Any]) -> str:
    period: Period = params["period"]
    team = f"-team{params['team']}" if params.get("team") else ""
    return (
        f"analytics-{params['group_by']}{team}-"
        f"{period.start:%Y%m%dT%H%M}-{period.end:%Y%m%dT%H%M}.csv"
    )


def csv_response(rows: list[dict[str, Any]], *, columns: list[str], filename: str) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    for row in rows:
        writer.writerow([spreadsheet_cell(row[column]) for column in columns])
    return response
