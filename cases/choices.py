"""Choices of the cases app (DESIGN.md habit 6). Values are snake_case, as the API shows them."""

from django.db import models


def a_or_an(word: str) -> str:
    """The article for a status label: "An in progress task", "A new task"."""
    return f"{'An' if word[:1].lower() in 'aeiou' else 'A'} {word}"


class CaseType(models.TextChoices):
    QUESTION = "question", "Question"
    INCIDENT = "incident", "Incident"
    PROBLEM = "problem", "Problem"
    REQUEST = "request", "Request"
    COMPLAINT = "complaint", "Complaint"


class CaseStatus(models.TextChoices):
    NEW = "new", "New"
    IN_PROGRESS = "in_progress", "In progress"
    AWAITING_CUSTOMER = "awaiting_customer", "Awaiting customer"
    AWAITING_VENDOR = "awaiting_vendor", "Awaiting vendor"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


OPEN_CASE_STATUSES = (
    CaseStatus.NEW,
    CaseStatus.IN_PROGRESS,
    CaseStatus.AWAITING_CUSTOMER,
    CaseStatus.AWAITING_VENDOR,
)

CASE_TRANSITIONS: dict[str, frozenset[str]] = {
    CaseStatus.NEW: frozenset(
        {"in_progress", "awaiting_customer", "awaiting_vendor", "resolved", "closed"}
    ),
    CaseStatus.IN_PROGRESS: frozenset(
        {"awaiting_customer", "awaiting_vendor", "resolved", "closed"}
    ),
    CaseStatus.AWAITING_CUSTOMER: frozenset(
        {"in_progress", "awaiting_vendor", "resolved", "closed"}
    ),
    CaseStatus.AWAITING_VENDOR: frozenset(
        {"in_progress", "awaiting_customer", "resolved", "closed"}
    ),
    CaseStatus.RESOLVED: frozenset({"in_progress", "closed"}),
    CaseStatus.CLOSED: frozenset({"in_progress"}),
}


class Priority(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"
    URGENT = "urgent", "Urgent"


class Sentiment(models.TextChoices):
    UNKNOWN = "unknown", "Unknown"
    POSITIVE = "positive", "Positive"
    NEUTRAL = "neutral", "Neutral"
    NEGATIVE = "negative", "Negative"


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEB = "web", "Web"
    PHONE = "phone", "Phone"
    API = "api", "API"
    CHAT = "chat", "Chat"
    ACTIVESYNC = "activesync", "ActiveSync"


class OrganizationTier(models.TextChoices):
    STANDARD = "standard", "Standard"
    SILVER = "silver", "Silver"
    GOLD = "gold", "Gold"
    PLATINUM = "platinum", "Platinum"


class TaskStatus(models.TextChoices):
    NEW = "new", "New"
    IN_PROGRESS = "in_progress", "In progress"
    RESOLVED = "resolved", "Resolved"
    CLOSED = "closed", "Closed"


TASK_TRANSITIONS: dict[str, frozenset[str]] = {
    TaskStatus.NEW: frozenset({"in_progress", "resolved", "closed"}),
    TaskStatus.IN_PROGRESS: frozenset({"resolved", "closed"}),
    TaskStatus.RESOLVED: frozenset({"in_progress", "closed"}),
    TaskStatus.CLOSED: frozenset({"in_progress"}),
}
OPEN_TASK_STATUSES = (TaskStatus.NEW, TaskStatus.IN_PROGRESS)


class PhoneKind(models.TextChoices):
    WORK = "work", "Work"
    MOBILE = "mobile", "Mobile"
    HOME = "home", "Home"
    OTHER = "other", "Other"


class LinkKind(models.TextChoices):
    RELATED = "related", "Related"
    DUPLICATE = "duplicate", "Duplicate of"
    CAUSED_BY = "caused_by", "Caused by"
    FOLLOW_UP = "follow_up", "Follow-up of"


class TimelineKind(models.TextChoices):
    CREATED = "created", "Created"
    FIELD_CHANGED = "field_changed", "Field changed"
    STATUS_CHANGED = "status_changed", "Status changed"
    ASSIGNED = "assigned", "Assigned"
    NOTE_ADDED = "note_added", "Note added"
    TASK_ADDED = "task_added", "Task added"
    TASK_CHANGED = "task_changed", "Task changed"
    MERGED_INTO = "merged_into", "Merged into another case"
    MERGED_FROM = "merged_from", "Another case merged in"
    LINKED = "linked", "Linked"
    UNLINKED = "unlinked", "Unlinked"
    WATCHER_ADDED = "watcher_added", "Watcher added"
    WATCHER_REMOVED = "watcher_removed", "Watcher removed"
    TAGS_CHANGED = "tags_changed", "Tags changed"
    MESSAGE_RECEIVED = "message_received", "Message received"
    MESSAGE_SENT = "message_sent", "Message sent"
    BOUNCE_RECEIVED = "bounce_received", "Bounce received"
    SLA_AT_RISK = "sla_at_risk", "SLA target at risk"
    SLA_BREACHED = "sla_breached", "SLA target breached"
    RULE_FIRED = "rule_fired", "Workflow rule fired"


class MessageDirection(models.TextChoices):
    INBOUND = "inbound", "From the customer"
    OUTBOUND = "outbound", "From us"


class IntakeOutcome(models.TextChoices):
    """What intake decided for a message; the row recording it makes intake idempotent."""

    NEW_CASE = "new_case", "Opened a new case"
    THREADED = "threaded", "Added to its case"
    REOPENED = "reopened", "Reopened its case"
    FOLLOW_UP = "follow_up", "Opened a follow-up case"
    AUTO_REPLY = "auto_reply", "Auto-reply (opens no case)"
    BOUNCE = "bounce", "Bounce"
    OWN_ADDRESS = "own_address", "From our own address (opens no case)"
    RATE_LIMITED = "rate_limited", "Sender over the new-case rate"
    NOT_THREADED = "not_threaded", "Ours or personal, not part of a case"
    NO_SENDER = "no_sender", "No sender address"
    AGENT_REPLY = "agent_reply", "Sent by an agent from the case"
    AUTO_ACK = "auto_ack", "Automatic acknowledgement (not a response)"
    AUTOMATED = "automated", "Sent by a workflow rule (not a response)"


# Mail the machine sent: recorded on the case, marked Auto-Submitted, moving no clock.
AUTOMATIC_OUTCOMES = frozenset({IntakeOutcome.AUTO_ACK, IntakeOutcome.AUTOMATED})


class SlaMetric(models.TextChoices):
    FIRST_RESPONSE = "first_response", "First response"
    NEXT_RESPONSE = "next_response", "Next response"
    RESOLUTION = "resolution", "Resolution"


class SlaState(models.TextChoices):
    """A target's state on a case; blank: the case has no such target."""

    ON_TRACK = "on_track", "On track"
    AT_RISK = "at_risk", "At risk"
    BREACHED = "breached", "Breached"
    MET = "met", "Met"
    PAUSED = "paused", "Paused"


# The states whose clock still runs (the beat tick looks only at these).
SLA_RUNNING_STATES = (SlaState.ON_TRACK, SlaState.AT_RISK)


class VipCondition(models.TextChoices):
    ANY = "", "Any customer"
    VIP = "vip", "VIP customers only"
    NOT_VIP = "not_vip", "Customers who are not VIP"


# --- workflow rules -------------------------------------------------------------------------


class RuleTrigger(models.TextChoices):
    """When a rule is considered. "Case updated" also fires for the specific changes below it
    (status, assignment, fields, tags); messages, SLA and time have triggers of their own."""

    CASE_CREATED = "case_created", "Case created"
    CASE_UPDATED = "case_updated", "Case updated (any change)"
    STATUS_CHANGED = "status_changed", "Status changed"
    ASSIGNED = "assigned", "Assigned (team or agent changed)"
    CUSTOMER_MESSAGE = "customer_message", "Message received from the customer"
    AGENT_REPLIED = "agent_replied", "Agent replied"
    SLA_AT_RISK = "sla_at_risk", "SLA target at risk"
    SLA_BREACHED = "sla_breached", "SLA target breached"
    TASK_OVERDUE = "task_overdue", "Task overdue"
    TIME = "time", "Time-based (checked by the worker)"


# The triggers a "case updated" rule also answers.
UPDATE_TRIGGERS = frozenset(
    {RuleTrigger.CASE_UPDATED, RuleTrigger.STATUS_CHANGED, RuleTrigger.ASSIGNED}
)


# Triggers whose events carry changes ("changed to" conditions) and messages.
CHANGE_TRIGGERS = UPDATE_TRIGGERS
MESSAGE_TRIGGERS = frozenset({RuleTrigger.CUSTOMER_MESSAGE, RuleTrigger.AGENT_REPLIED})


class TimeAnchor(models.TextChoices):
    """What a time-based rule measures from."""

    STATUS_SINCE = "status_since", "Time in the current status"
    CREATED = "created", "Time since the case was created"
    UPDATED = "updated", "Time since the case last changed"
    LAST_CUSTOMER_MESSAGE = "last_customer_message", "Time since the customer last wrote"
    LAST_AGENT_REPLY = "last_agent_reply", "Time since an agent last replied"


class ConditionGroup(models.TextChoices):
    ALL = "all", "All of these"
    ANY = "any", "Any of these"


class Operator(models.TextChoices):
    IS = "is", "is"
    IS_NOT = "is_not", "is not"
    ONE_OF = "one_of", "is one of"
    NONE_OF = "none_of", "is none of"
    CONTAINS = "contains", "contains"
    NOT_CONTAINS = "not_contains", "does not contain"
    STARTS_WITH = "starts_with", "starts with"
    ENDS_WITH = "ends_with", "ends with"
    MATCHES = "matches", "matches the regular expression"
    IS_SET = "is_set", "is set"
    NOT_SET = "not_set", "is not set"
    CHANGED = "changed", "changed"
    CHANGED_FROM = "changed_from", "changed from"
    CHANGED_TO = "changed_to", "changed to"


class ActionKind(models.TextChoices):
    SET_STATUS = "set_status", "Set status"
    SET_PRIORITY = "set_priority", "Set priority"
    SET_TYPE = "set_type", "Set type"
    SET_TEAM = "set_team", "Move to team"
    SET_ASSIGNEE = "set_assignee", "Assign to agent"
    UNASSIGN = "unassign", "Unassign"
    ROUND_ROBIN = "round_robin", "Assign round-robin in the team"
    ADD_TAG = "add_tag", "Add tag"
    REMOVE_TAG = "remove_tag", "Remove tag"
    CREATE_TASK = "create_task", "Create a task from a template"
    MESSAGE_TO_TASK = "message_to_task", "Turn the message into a task"
    ADD_NOTE = "add_note", "Add an internal note"
    EMAIL_CUSTOMER = "email_customer", "Email the customer"
    EMAIL_AGENTS = "email_agents", "Email agents"
    NOTIFY_WATCHERS = "notify_watchers", "Notify watchers"
    WEBHOOK = "webhook", "Call a webhook"


class AgentRecipients(models.TextChoices):
    ASSIGNEE = "assignee", "The assignee"
    TEAM = "team", "The case's team"
    WATCHERS = "watchers", "The watchers"
    AGENT = "agent", "The chosen agent"


class DeliveryState(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed (gave up)"
