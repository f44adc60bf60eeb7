"""/api/v1/analytics/sla: SLA compliance per policy, team, agent or priority over a period.

A thin view: it validates the query parameters like the other analytics endpoints (a 400
naming each bad parameter), calls `cases.sla_reports.sla_report`, which counts only the cases
the caller may see, and renders the result. How targets are counted is documented there.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from cases.analytics import TrendGrouping
from cases.api.analytics import (
    BAD_PARAMETERS,
    TAGS,
    AnalyticsView,
    PeriodQuerySerializer,
    PeriodResultSerializer,
)
from cases.choices import SlaMetric
from cases.sla_reports import SlaGrouping, SlaReport, Tally, sla_report

# Query parameters -------------------------------------------------------------------------


class SlaReportQuerySerializer(PeriodQuerySerializer):
    group_by = serializers.ChoiceField(
        choices=SlaGrouping.choices,
        default=SlaGrouping.POLICY,
        help_text="Compliance rows per SLA policy, team, agent (current assignee) or priority.",
    )
    interval = serializers.ChoiceField(
        choices=TrendGrouping.choices,
        default=TrendGrouping.DAY,
        help_text="Trend buckets: UTC days or weeks (starting on Monday).",
    )


# Responses --------------------------------------------------------------------------------


def _percent() -> serializers.FloatField:
    return serializers.FloatField(
        allow_null=True, help_text="met / (met + breached) × 100, one decimal; null: none."
    )


class SlaTallySerializer(serializers.Serializer):
    met = serializers.IntegerField(help_text="Targets met (counted when answered/resolved).")
    breached = serializers.IntegerField(help_text="Targets breached (counted at the deadline).")
    compliance_percent = _percent()


class SlaComplianceRowSerializer(serializers.Serializer):
    group = serializers.JSONField(
        help_text="Policy, team or agent id, or the priority value; null for no policy or "
        "unassigned."
    )
    label = serializers.CharField()
    met = serializers.IntegerField()
    breached = serializers.IntegerField()
    compliance_percent = _percent()


class SlaComplianceSerializer(serializers.Serializer):
    first_response = SlaComplianceRowSerializer(many=True)
    next_response = SlaComplianceRowSerializer(many=True)
    resolution = SlaComplianceRowSerializer(many=True)


class SlaTotalsSerializer(serializers.Serializer):
    first_response = SlaTallySerializer()
    next_response = SlaTallySerializer()
    resolution = SlaTallySerializer()


class SlaTrendBucketSerializer(serializers.Serializer):
    period_start = serializers.DateField(help_text="First UTC day of the bucket.")
    met = serializers.IntegerField(help_text="All metrics together.")
    breached = serializers.IntegerField()
    compliance_percent = _percent()
    metrics = SlaTotalsSerializer(help_text="The same per metric.")


class SlaNowCountsSerializer(serializers.Serializer):
    at_risk = serializers.IntegerField()
    breached = serializers.IntegerField()


class SlaNowByMetricSerializer(serializers.Serializer):
    first_response = SlaNowCountsSerializer()
    next_response = SlaNowCountsSerializer()
    resolution = SlaNowCountsSerializer()


class SlaNowTeamSerializer(serializers.Serializer):
    team = serializers.IntegerField()
    label = serializers.CharField()
    at_risk = serializers.IntegerField()
    breached = serializers.IntegerField()


class SlaNowSerializer(serializers.Serializer):
    at_risk = serializers.IntegerField(
        help_text="Open cases with a target at risk and none breached."
    )
    breached = serializers.IntegerField(help_text="Open cases with a target past its deadline.")
    by_metric = SlaNowByMetricSerializer(help_text="Targets (not cases) per metric.")
    by_team = SlaNowTeamSerializer(many=True, help_text="Teams with such cases, by name.")


class SlaPercentilesSerializer(serializers.Serializer):
    p50 = serializers.FloatField(allow_null=True)
    p75 = serializers.FloatField(allow_null=True)
    p90 = serializers.FloatField(allow_null=True)
    p95 = serializers.FloatField(allow_null=True)


class SlaHistogramBucketSerializer(serializers.Serializer):
    label = serializers.CharField()
    lower_seconds = serializers.IntegerField(allow_null=True, help_text="Inclusive.")
    upper_seconds = serializers.IntegerField(allow_null=True, help_text="Exclusive.")
    count = serializers.IntegerField()


class SlaDistributionSerializer(serializers.Serializer):
    count = serializers.IntegerField()
    percentiles = SlaPercentilesSerializer(
        help_text="Wall-clock seconds, linearly interpolated (percentile_cont)."
    )
    histogram = SlaHistogramBucketSerializer(many=True)


class SlaDistributionsSerializer(serializers.Serializer):
    first_response = SlaDistributionSerializer(
        help_text="first_response_at - created_at of cases first answered in the period."
    )
    resolution = SlaDistributionSerializer(
        help_text="resolved_at - created_at of cases resolved in the period."
    )


class SlaReportSerializer(PeriodResultSerializer):
    # Plain strings here (the values are the query's): choice fields would add enum
    # components whose names collide with the other analytics endpoints' `group_by`.
    group_by = serializers.CharField(help_text="policy, team, agent or priority.")
    interval = serializers.CharField(help_text="day or week.")
    as_of = serializers.DateTimeField(help_text="The moment `now` and breaches refer to.")
    compliance = SlaComplianceSerializer(help_text="Per metric, one row per group.")
    totals = SlaTotalsSerializer(help_text="Per metric, all groups together.")
    trends = SlaTrendBucketSerializer(many=True)
    now = SlaNowSerializer()
    distributions = SlaDistributionsSerializer()


def report_data(report: SlaReport) -> dict[str, Any]:
    """The report as the serializer reads it (compliance percentages filled in)."""

    def tally(value: Tally) -> dict[str, Any]:
        return {**asdict(value), "compliance_percent": value.compliance_percent}

    return {
        "group_by": report.group_by,
        "interval": report.interval,
        "as_of": report.as_of,
        "compliance": {
            metric: [asdict(row) for row in rows] for metric, rows in report.compliance.items()
        },
        "totals": {metric: tally(value) for metric, value in report.totals.items()},
        "trends": [
            {
                **asdict(bucket),
                "metrics": {metric: tally(value) for metric, value in bucket.metrics.items()},
            }
            for bucket in report.trends
        ],
        "now": asdict(report.now),
        "distributions": {metric: asdict(value) for metric, value in report.distributions.items()},
    }


EXAMPLE_ROW = {"met": 41, "breached": 3, "compliance_percent": 93.2}


# Views ------------------------------------------------------------------------------------


class SlaReportView(AnalyticsView):
    query_serializer_class = SlaReportQuerySerializer

    @extend_schema(
        tags=TAGS,
        operation_id="analytics_sla",
        parameters=[SlaReportQuerySerializer],
        responses={
            200: OpenApiResponse(SlaReportSerializer, description="The SLA report."),
            400: BAD_PARAMETERS,
        },
        examples=[
            OpenApiExample(
                "Per policy, by day",
                response_only=True,
                value={
                    "from": "2026-03-01T00:00:00Z",
                    "to": "2026-03-31T00:00:00Z",
                    "team": None,
                    "group_by": "policy",
                    "interval": "day",
                    "as_of": "2026-03-30T12:00:00Z",
                    "compliance": {
                        metric: [{"group": 1, "label": "Standard", **EXAMPLE_ROW}]
                        for metric in SlaMetric.values
                    },
                    "totals": dict.fromkeys(SlaMetric.values, EXAMPLE_ROW),
                    "trends": [
                        {
                            "period_start": "2026-03-01",
                            **EXAMPLE_ROW,
                            "metrics": dict.fromkeys(SlaMetric.values, EXAMPLE_ROW),
                        }
                    ],
                    "now": {
                        "at_risk": 2,
                        "breached": 1,
                        "by_metric": dict.fromkeys(SlaMetric.values, {"at_risk": 1, "breached": 0}),
                        "by_team": [{"team": 1, "label": "Support", "at_risk": 2, "breached": 1}],
                    },
                    "distributions": dict.fromkeys(
                        ["first_response", "resolution"],
                        {
                            "count": 44,
                            "percentiles": {
                                "p50": 1800.0,
                                "p75": 5400.0,
                                "p90": 14400.0,
                                "p95": 21600.0,
                            },  # fmt: skip
                            "histogram": [
                                {
                                    "label": "< 15 min",
                                    "lower_seconds": None,
                                    "upper_seconds": 900,
                                    "count": 9,
                                },  # fmt: skip
                            ],
                        },
                    ),
                },
            )
        ],
    )
    def get(self, request: Request) -> Response:
        """SLA compliance of the period: targets met and breached per metric (first response,
        next response, resolution) and group, the trend per UTC day or week, open cases at
        risk or breached now (per team and metric), and the first-response and resolution
        time distributions (wall-clock seconds: percentiles and histogram).

        A target counts once, when it concludes: met when answered or resolved in time,
        breached at its deadline. Only cases the caller may see count; merged duplicates
        are left out."""
        params = self.query(request)
        report = sla_report(
            user=request.user,
            period=params["period"],
            group_by=params["group_by"],
            interval=params["interval"],
            team_id=params.get("team"),
        )
        data = self.envelope(params, **report_data(report))
        return Response(SlaReportSerializer(data).data)
