"""Workflow rules through the API: the dry run.

`POST /api/v1/workflows/dry-run` with `{"case": <id or number>, "trigger": "case_updated",
"message": <id, optional>}` answers which rules would fire for that case if the trigger
happened now, each action's outcome, and the fields that would change, without changing
anything (the rules run in a transaction that is rolled back; nothing is emailed or posted).

Rules are admin configuration, so admins may dry-run any case and team leads the cases of the
teams they lead; other agents get 403. A case the caller may not see is a 404.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cases import selectors
from cases.choices import MESSAGE_TRIGGERS, RuleTrigger
from cases.models import Case, CaseMessage
from cases.workflow.engine import workflow_dry_run
from crm.selectors import user_is_admin, user_led_team_ids


class DryRunRequest(serializers.Serializer):
    case = serializers.CharField(help_text="The case's id or number (CASE-000123).")
    trigger = serializers.ChoiceField(choices=RuleTrigger.choices, default="case_updated")
    message = serializers.IntegerField(
        required=False,
        help_text="For message triggers: a message of the case (default: its latest).",
    )


class ActionOutcome(serializers.Serializer):
    kind = serializers.CharField()
    summary = serializers.CharField()
    ok = serializers.BooleanField()
    error = serializers.CharField()


class FiredRule(serializers.Serializer):
    rule = serializers.DictField(help_text="{id, name}")
    trigger = serializers.CharField()
    actions = ActionOutcome(many=True)


class DryRunResult(serializers.Serializer):
    case = serializers.CharField()
    trigger = serializers.CharField()
    rounds = serializers.IntegerField(help_text="Rounds of rules the change would set off.")
    fired = FiredRule(many=True)
    changes = serializers.DictField(help_text="field → {before, after}, as people read them.")


class WorkflowDryRunView(APIView):
    """Which rules would fire for a case, and what they would change. Changes nothing."""

    @extend_schema(
        request=DryRunRequest,
        responses={
            200: DryRunResult,
            400: OpenApiResponse(description="A bad trigger, case or message."),
            403: OpenApiResponse(description="Only admins and team leads run dry runs."),
            404: OpenApiResponse(description="No such case that the caller may see."),
        },
    )
    def post(self, request: Request) -> Response:
        query = DryRunRequest(data=request.data)
        query.is_valid(raise_exception=True)
        case = self._case(request, query.validated_data["case"])
        trigger = query.validated_data["trigger"]
        message_id = self._message(case, trigger, query.validated_data.get("message"))
        result = workflow_dry_run(case=case, trigger=trigger, message_id=message_id)
        return Response(
            {
                "case": case.number,
                "trigger": trigger,
                "rounds": result.rounds,
                "fired": [
                    {
                        "rule": {"id": fired.rule_id, "name": fired.rule_name},
                        "trigger": fired.trigger,
                        "actions": fired.actions,
                    }
                    for fired in result.fired
                ],
                "changes": {
                    name: {"before": before, "after": after}
                    for name, (before, after) in result.changes.items()
                },
            }
        )

    def _case(self, request: Request, ref: str) -> Case:
        ref = ref.strip()
        visible = selectors.case_list(user=request.user)
        lookup = {"pk": int(ref)} if ref.isdigit() else {"number": ref.upper()}
        case = visible.filter(**lookup).first()
        if case is None:
            raise exceptions.NotFound("No such case.")
        if not (user_is_admin(request.user) or case.team_id in user_led_team_ids(request.user)):
            raise exceptions.PermissionDenied(
                "Only admins, and leads of the case's team, may dry-run the workflow rules."
            )
        return case

    def _message(self, case: Case, trigger: str, message_id: int | None) -> int | None:
        if trigger not in MESSAGE_TRIGGERS:
            if message_id is not None:
                raise exceptions.ValidationError({"message": ["Only message triggers take one."]})
            return None
        links = CaseMessage.objects.filter(case=case)
        if message_id is not None:
            if not links.filter(message_id=message_id).exists():
                raise exceptions.ValidationError({"message": ["Not a message of this case."]})
            return message_id
        latest = selectors.case_latest_message_id(case=case)
        if latest is None:
            raise exceptions.ValidationError({"message": ["This case has no message."]})
        return latest
