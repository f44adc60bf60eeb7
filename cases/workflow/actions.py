"""What a rule can do. Every action goes through the case services, so the timeline, the SLA
clock, notifications and further rules see a rule's change exactly as they see an agent's.

`action_problems` checks an action's columns for its kind (the admin form and the API call it,
and the compiled rules skip anything it refuses). `run_action` does one action inside the
rule's transaction and returns a one-line summary for the execution log; it raises on
failure, and the engine undoes that action alone (a savepoint) and logs the error.

Side effects that talk to other systems (email to the customer, webhooks) are written down in
the rule's transaction and carried out after commit, so a slow receiver never holds a case's
lock and a rolled-back rule sends nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.mail import send_mass_mail
from django.db import transaction
from django.utils import timezone
from django.utils.html import strip_tags

from cases.choices import ActionKind, AgentRecipients, CaseStatus, CaseType, Priority
from cases.models import (
    CannedResponse,
    Case,
    RuleAction,
    TaskTemplate,
    WebhookEndpoint,
    WorkflowEvent,
    WorkflowRun,
)
from cases.workflow.fields import RuleError, Subject
from crm.models import NotificationKind, Team, TeamMembership, User

CHOICE_VALUES = {
    ActionKind.SET_STATUS: CaseStatus,
    ActionKind.SET_PRIORITY: Priority,
    ActionKind.SET_TYPE: CaseType,
}
TAG_KINDS = (ActionKind.ADD_TAG, ActionKind.REMOVE_TAG)
# The columns each kind uses; any other column filled in is a mistake worth saying.
USES: dict[str, frozenset[str]] = {
    ActionKind.SET_STATUS: frozenset({"value"}),
    ActionKind.SET_PRIORITY: frozenset({"value"}),
    ActionKind.SET_TYPE: frozenset({"value"}),
    ActionKind.SET_TEAM: frozenset({"team"}),
    ActionKind.SET_ASSIGNEE: frozenset({"agent"}),
    ActionKind.UNASSIGN: frozenset(),
    ActionKind.ROUND_ROBIN: frozenset(),
    ActionKind.ADD_TAG: frozenset({"value"}),
    ActionKind.REMOVE_TAG: frozenset({"value"}),
    ActionKind.CREATE_TASK: frozenset({"task_template"}),
    ActionKind.MESSAGE_TO_TASK: frozenset(),
    ActionKind.ADD_NOTE: frozenset({"body"}),
    ActionKind.EMAIL_CUSTOMER: frozenset({"canned_response", "subject", "body"}),
    ActionKind.EMAIL_AGENTS: frozenset({"recipients", "agent", "subject", "body"}),
    ActionKind.NOTIFY_WATCHERS: frozenset({"subject", "body"}),
    ActionKind.WEBHOOK: frozenset({"webhook"}),
}
COLUMNS = ("value", "team", "agent", "recipients", "task_template", "canned_response",
           "webhook", "subject", "body")  # fmt: skip


# --- validation ----------------------------------------------------------------------------------


def action_problems(action: RuleAction) -> dict[str, str]:
    """Every problem of one action, by column (empty: it may be saved and will run)."""
    kind = action.kind
    if kind not in USES:
        return {"kind": f"“{kind}” is not an action."}
    problems = {
        column: "This action does not use this field."
        for column in COLUMNS
        if column not in USES[kind] and _filled(action, column)
    }
    problems.update(_kind_problems(action))
    return problems


def _filled(action: RuleAction, column: str) -> bool:
    if column in ("team", "agent", "task_template", "canned_response", "webhook"):
        return getattr(action, f"{column}_id") is not None
    return bool(str(getattr(action, column) or "").strip())


def _kind_problems(action: RuleAction) -> dict[str, str]:  # noqa: C901 - one branch per kind
    kind = action.kind
    if kind in CHOICE_VALUES:
        choices = CHOICE_VALUES[kind]
        if action.value not in choices.values:
            return {"value": f"Choose one of: {', '.join(choices.values)}."}
    elif kind in TAG_KINDS:
        from cases.services.cases import normalize_tag

        if not normalize_tag(action.value or ""):
            return {"value": "Enter the tag's name."}
        action.value = normalize_tag(action.value)
    elif kind == ActionKind.SET_TEAM and action.team_id is None:
        return {"team": "Choose the team."}
    elif kind == ActionKind.SET_ASSIGNEE:
        if action.agent_id is None:
            return {"agent": "Choose the agent."}
        if not action.agent.is_active:
            return {"agent": "This agent is deactivated."}
    elif kind == ActionKind.CREATE_TASK and action.task_template_id is None:
        return {"task_template": "Choose the task template."}
    elif kind == ActionKind.ADD_NOTE:
        return _template_problems(action, body_required=True)
    elif kind == ActionKind.EMAIL_CUSTOMER:
        if action.canned_response_id is not None:
            if action.subject.strip() or action.body.strip():
                return {"body": "Send a canned response or write the email, not both."}
            return {}
        return _template_problems(action, body_required=True)
    elif kind == ActionKind.EMAIL_AGENTS:
        return _recipient_problems(action) or _template_problems(
            action, body_required=True, subject_required=True
        )
    elif kind == ActionKind.NOTIFY_WATCHERS:
        return _template_problems(action, subject_required=True)
    elif kind == ActionKind.WEBHOOK and action.webhook_id is None:
        return {"webhook": "Choose the webhook."}
    return {}


def _recipient_problems(action: RuleAction) -> dict[str, str]:
    if not action.recipients:
        return {"recipients": "Choose who gets the email."}
    if (action.recipients == AgentRecipients.AGENT) != (action.agent_id is not None):
        return {"agent": "Choose the agent exactly when the recipients are “the chosen agent”."}
    return {}


def _template_problems(
    action: RuleAction, *, body_required: bool = False, subject_required: bool = False
) -> dict[str, str]:
    problems = {}
    for column, required in (("subject", subject_required), ("body", body_required)):
        text = getattr(action, column) or ""
        if not text.strip():
            if required:
                problems[column] = "This action needs it."
            continue
        from cases.services.macros import macro_template_problem

        problem = macro_template_problem(text)
        if problem:
            problems[column] = problem
    return problems


# --- running ----------------------------------------------------------------------------------


@dataclass
class Context:
    """What an action runs on: the locked case (as `subject.case`), the event and the log row
    of this firing (webhooks and emails refer to it)."""

    subject: Subject
    event: WorkflowEvent
    run: WorkflowRun
    position: int

    @property
    def case(self) -> Case:
        return self.subject.case


def template_render(**kwargs: Any) -> str:
    from cases.services.macros import template_render as render

    return render(**kwargs)


def run_action(action: RuleAction, ctx: Context) -> str:
    """Do one action; returns its summary. Raises (a CaseError with a message) on failure."""
    return RUNNERS[action.kind](action, ctx)


def _set_status(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_change_status

    case_change_status(actor=None, case=ctx.case, status=action.value)
    return f"status → {CaseStatus(action.value).label}"


def _set_field(field: str, choices: type) -> Any:
    def run(action: RuleAction, ctx: Context) -> str:
        from cases.services import case_update

        case_update(actor=None, case=ctx.case, **{field: action.value})
        return f"{field} → {choices(action.value).label}"

    return run


def _set_team(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_assign

    team = Team.objects.get(pk=action.team_id)
    case = ctx.case
    keep = (
        case.assignee_id is not None
        and TeamMembership.objects.filter(
            team=team, user_id=case.assignee_id, user__is_active=True
        ).exists()
    )
    case_assign(actor=None, case=case, team=team, assignee=case.assignee if keep else None)
    return f"team → {team}"


def _set_assignee(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_assign

    agent = User.objects.get(pk=action.agent_id)
    case_assign(actor=None, case=ctx.case, assignee=agent)
    return f"assigned to {agent}"


def _unassign(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_assign

    case_assign(actor=None, case=ctx.case, assignee=None)
    return "unassigned"


def _round_robin(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_assign_round_robin

    case = case_assign_round_robin(actor=None, case=ctx.case)
    return f"assigned round-robin to {case.assignee}"


def _tags(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_set_tags

    current = set(ctx.case.tags.values_list("name", flat=True))
    adding = action.kind == ActionKind.ADD_TAG
    wanted = current | {action.value} if adding else current - {action.value}
    case_set_tags(actor=None, case=ctx.case, names=wanted)
    ctx.subject.forget_tags()
    return f"tag {'+' if adding else '−'}{action.value}"


def _create_task(action: RuleAction, ctx: Context) -> str:
    from cases.services import task_create

    template = TaskTemplate.objects.get(pk=action.task_template_id)
    case = ctx.case
    name = f"task template “{template.name}”"
    task = task_create(
        actor=None,
        case=case,
        subject=template_render(name=name, source=template.subject, case=case, as_html=False)[:300],
        description=template_render(
            name=name, source=template.description, case=case, as_html=False
        ),
        priority=template.priority,
        assignee=case.assignee if template.assign_to_case_assignee else None,
        due_at=timezone.now() + timedelta(hours=template.due_in_hours)
        if template.due_in_hours
        else None,
        checklist=template.checklist_items(),
    )
    return f"task “{task.subject}” created"


def _message_to_task(action: RuleAction, ctx: Context) -> str:
    from cases.services import task_from_message

    message = ctx.subject.message
    if message is None:
        raise RuleError("This event has no message to turn into a task.")
    task = task_from_message(actor=None, message=message, assignee=ctx.case.assignee)
    return f"message turned into task “{task.subject}”"


def _add_note(action: RuleAction, ctx: Context) -> str:
    from cases.services import case_add_note

    body = template_render(name="note", source=action.body, case=ctx.case, as_html=False)
    case_add_note(actor=None, case=ctx.case, body=body or action.body)
    return "internal note added"


def _email_customer(action: RuleAction, ctx: Context) -> str:
    case = ctx.case
    if case.customer_id is None:
        raise RuleError("The case has no customer to write to.")
    if action.canned_response_id is not None:
        from cases.services.macros import macro_apply, macro_render_subject

        # A canned response brings its own actions (status, tags), as when an agent uses it.
        macro = CannedResponse.objects.get(pk=action.canned_response_id)
        body = macro_apply(macro=macro, case=case, actor=None)
        subject = macro_render_subject(macro=macro, case=case, agent=None)
    else:
        subject = template_render(name="email", source=action.subject, case=case, as_html=False)
        body = template_render(name="email", source=action.body, case=case)
    from cases.tasks import workflow_email_customer

    run_id, position = ctx.run.pk, ctx.position
    transaction.on_commit(
        lambda: workflow_email_customer.delay(run_id, position, subject, body), robust=True
    )
    return "email to the customer queued" + (
        f" (canned response “{macro.name}”)" if action.canned_response_id else ""
    )


def _agent_recipients(action: RuleAction, case: Case) -> list[User]:
    match action.recipients:
        case AgentRecipients.ASSIGNEE:
            users = User.objects.filter(pk=case.assignee_id)
        case AgentRecipients.TEAM:
            users = User.objects.filter(memberships__team_id=case.team_id)
        case AgentRecipients.WATCHERS:
            users = case.watchers.all()
        case _:
            users = User.objects.filter(pk=action.agent_id)
    return list(users.filter(is_active=True).exclude(email="").distinct().order_by("pk"))


def _email_agents(action: RuleAction, ctx: Context) -> str:
    case = ctx.case
    recipients = _agent_recipients(action, case)
    if not recipients:
        return "no agent to email"
    subject = template_render(name="email", source=action.subject, case=case, as_html=False)
    body = template_render(name="email", source=action.body, case=case, as_html=False)
    from django.conf import settings

    batch = [(subject, body, settings.DEFAULT_FROM_EMAIL, [u.email]) for u in recipients]
    transaction.on_commit(lambda: send_mass_mail(batch, fail_silently=False), robust=True)
    return f"emailed {len(recipients)} agent{'s' if len(recipients) != 1 else ''}"


def _notify_watchers(action: RuleAction, ctx: Context) -> str:
    from cases.services.cases import case_url
    from crm.notifications import notify

    case = ctx.case
    watchers = list(case.watchers.filter(is_active=True).order_by("pk"))
    title = template_render(name="notification", source=action.subject, case=case, as_html=False)
    body = (
        template_render(name="notification", source=action.body, case=case, as_html=False)
        if action.body.strip()
        else ""
    )
    notify(
        recipients=watchers,
        kind=NotificationKind.WORKFLOW,
        title=f"{case.number}: {title}",
        body=strip_tags(body),
        url=case_url(case),
    )
    return f"notified {len(watchers)} watcher{'s' if len(watchers) != 1 else ''}"


def _webhook(action: RuleAction, ctx: Context) -> str:
    from cases.workflow.webhooks import webhook_enqueue

    endpoint = WebhookEndpoint.objects.get(pk=action.webhook_id)
    delivery = webhook_enqueue(
        endpoint=endpoint, payload=webhook_payload(ctx), case=ctx.case, run=ctx.run
    )
    return f"webhook “{endpoint}” queued (delivery #{delivery.pk})"


def webhook_payload(ctx: Context) -> dict[str, Any]:
    """What a webhook receives: the rule, the event and the case as the API names things."""
    case = ctx.case
    return {
        "event": "workflow.rule_fired",
        "rule": {"id": ctx.run.rule_id, "name": ctx.run.rule_name},
        "trigger": ctx.event.trigger,
        "changes": ctx.event.data.get("changes", {}),
        "case": {
            "id": case.pk,
            "number": case.number,
            "title": case.title,
            "status": case.status,
            "priority": case.priority,
            "type": case.type,
            "channel": case.channel,
            "team": case.team_id,
            "assignee": case.assignee_id,
            "customer": case.customer_id,
            "tags": sorted(ctx.subject.tags),
            "created_at": case.created_at,
            "updated_at": case.updated_at,
        },
        "message": ctx.event.message_id,
        "fired_at": ctx.run.at,
    }


RUNNERS = {
    ActionKind.SET_STATUS: _set_status,
    ActionKind.SET_PRIORITY: _set_field("priority", Priority),
    ActionKind.SET_TYPE: _set_field("type", CaseType),
    ActionKind.SET_TEAM: _set_team,
    ActionKind.SET_ASSIGNEE: _set_assignee,
    ActionKind.UNASSIGN: _unassign,
    ActionKind.ROUND_ROBIN: _round_robin,
    ActionKind.ADD_TAG: _tags,
    ActionKind.REMOVE_TAG: _tags,
    ActionKind.CREATE_TASK: _create_task,
    ActionKind.MESSAGE_TO_TASK: _message_to_task,
    ActionKind.ADD_NOTE: _add_note,
    ActionKind.EMAIL_CUSTOMER: _email_customer,
    ActionKind.EMAIL_AGENTS: _email_agents,
    ActionKind.NOTIFY_WATCHERS: _notify_watchers,
    ActionKind.WEBHOOK: _webhook,
}


# --- after commit ----------------------------------------------------------------------------


def email_customer_send(*, run_id: int, position: int, subject: str, body_html: str) -> None:
    """Send a rule's email (in the worker) and write the outcome into the execution log."""
    from cases.errors import CaseError
    from cases.services.replies import case_send_automatic

    run = WorkflowRun.objects.filter(pk=run_id).select_related("case__team").first()
    if run is None:
        return
    try:
        case_send_automatic(case=run.case, subject=subject, body_html=body_html)
    except CaseError as exc:
        _log_outcome(run_id, position, f"email not sent: {exc.message}")
        return
    _log_outcome(run_id, position, "")


def _log_outcome(run_id: int, position: int, error: str) -> None:
    with transaction.atomic():
        run = WorkflowRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or position >= len(run.actions):
            return
        entry = run.actions[position]
        entry["summary"] = "email to the customer sent" if not error else entry["summary"]
        if error:
            entry.update(ok=False, error=error)
            run.errors += 1
        run.save(update_fields=["actions", "errors"])
