"""Customers, organizations, cases, tasks, notes and the case timeline."""

from __future__ import annotations

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import F
from django.db.models.functions import Lower

from cases.choices import (
    OPEN_CASE_STATUSES,
    CaseStatus,
    CaseType,
    Channel,
    IntakeOutcome,
    LinkKind,
    MessageDirection,
    OrganizationTier,
    PhoneKind,
    Priority,
    Sentiment,
    SlaMetric,
    SlaState,
    TaskStatus,
    TimelineKind,
    VipCondition,
)
from crm.changes import ChangeTracked

USER = settings.AUTH_USER_MODEL

# Priorities as numbers, most urgent highest: text does not sort by urgency. The queue sorts
# by this very expression, so that the `case_priority` index serves it.
PRIORITY_RANK = models.Case(
    *(
        models.When(priority=value, then=models.Value(rank))
        for rank, value in enumerate(Priority.values)
    ),
    default=models.Value(0),
    output_field=models.IntegerField(),
)


class WithoutSearchVector(models.Manager):
    """Leaves the tsvector out of ordinary reads: only the database's search uses it, and
    fetching it with every row made a page of cases several times larger."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().defer("search_vector")


class Organization(models.Model):
    """A customer company. Its email domains match senders to it; its tier selects SLAs."""

    name = models.CharField(max_length=200, unique=True)
    tier = models.CharField(
        max_length=20, choices=OrganizationTier.choices, default=OrganizationTier.STANDARD
    )
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class OrganizationDomain(models.Model):
    """An email domain (`example.com`) owned by one organization, stored lower-case."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="domains")
    domain = models.CharField(max_length=253, unique=True)

    class Meta:
        ordering = ["domain"]

    def __str__(self) -> str:
        return self.domain


class Customer(ChangeTracked):
    """A person who writes to support. Visible to every agent; synced as a contact."""

    name = models.CharField(max_length=200)
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="customers"
    )
    is_vip = models.BooleanField("VIP", default=False)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta(ChangeTracked.Meta):
        ordering = ["name", "pk"]
        indexes = [
            *ChangeTracked.Meta.indexes,
            models.Index(fields=["name", "id"], name="customer_name"),  # the customer list
        ]

    def __str__(self) -> str:
        return self.name


class CustomerEmail(models.Model):
    """One of a customer's addresses. Unique case-insensitively: a sender is one customer."""

    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="emails")
    email = models.EmailField()
    is_primary = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(Lower("email"), name="cases_customer_email_ci_unique")
        ]
        ordering = ["-is_primary", "email"]

    def __str__(self) -> str:
        return self.email


class CustomerPhone(models.Model):
    customer = models.ForeignKey(Customer, on_delete=models.CASCADE, related_name="phones")
    number = models.CharField(max_length=40)
    kind = models.CharField(max_length=10, choices=PhoneKind.choices, default=PhoneKind.WORK)

    def __str__(self) -> str:
        return f"{self.number} ({self.kind})"


class Tag(models.Model):
    name = models.SlugField(max_length=50, unique=True, allow_unicode=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Case(models.Model):
    """A customer's matter, owned by a team, worked by an assignee, told by its timeline."""

    number = models.CharField(max_length=20, unique=True, editable=False)
    title = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    type = models.CharField(max_length=20, choices=CaseType.choices, default=CaseType.QUESTION)
    status = models.CharField(max_length=20, choices=CaseStatus.choices, default=CaseStatus.NEW)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    sentiment = models.CharField(
        max_length=10, choices=Sentiment.choices, default=Sentiment.UNKNOWN
    )
    channel = models.CharField(max_length=20, choices=Channel.choices, default=Channel.EMAIL)
    category = models.ForeignKey(
        "Category", null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    # Database defaults too: bulk loaders (cases.bulkdata's COPY) insert rows without them.
    summary = models.TextField(
        blank=True, default="", db_default="", help_text="One paragraph: what the customer wants."
    )
    triage = models.JSONField(
        default=dict,
        db_default=models.Value({}, output_field=models.JSONField()),
        blank=True,
        editable=False,
        help_text="What triage suggested per field, its source, the rules that matched and "
        "which fields an agent overrode (cases.services.triage).",
    )
    team = models.ForeignKey("crm.Team", on_delete=models.PROTECT, related_name="cases")
    assignee = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_cases"
    )
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    organization = models.ForeignKey(
        Organization, null=True, blank=True, on_delete=models.SET_NULL, related_name="cases"
    )
    tags = models.ManyToManyField(Tag, blank=True, related_name="cases")
    watchers = models.ManyToManyField(USER, blank=True, related_name="watched_cases")
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    merged_into = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="merged_cases"
    )
    sla_policy = models.ForeignKey(
        "SlaPolicy", null=True, blank=True, on_delete=models.SET_NULL, related_name="cases",
        editable=False,
    )  # fmt: skip
    sla_first_response_due = models.DateTimeField(null=True, blank=True, editable=False)
    sla_first_response_state = models.CharField(
        max_length=10, choices=SlaState.choices, blank=True, default="", db_default="",
        editable=False,
    )  # fmt: skip
    sla_first_response_risk_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the first response target turns at risk.",
    )
    sla_next_response_due = models.DateTimeField(null=True, blank=True, editable=False)
    sla_next_response_state = models.CharField(
        max_length=10, choices=SlaState.choices, blank=True, default="", db_default="",
        editable=False,
    )  # fmt: skip
    sla_next_response_risk_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the next response target turns at risk.",
    )
    sla_resolution_due = models.DateTimeField(null=True, blank=True, editable=False)
    sla_resolution_state = models.CharField(
        max_length=10, choices=SlaState.choices, blank=True, default="", db_default="",
        editable=False,
    )  # fmt: skip
    sla_resolution_risk_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the resolution target turns at risk."
    )
    sla_due = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="The nearest deadline of a running target (queues sort by it).",
    )  # fmt: skip
    first_response_at = models.DateTimeField(null=True, blank=True)
    waiting_since = models.DateTimeField(
        null=True,
        blank=True,
        help_text="The oldest customer message not yet answered (the next-response clock).",
    )
    last_inbound_at = models.DateTimeField(null=True, blank=True)
    last_outbound_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    updated_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta:
        ordering = ["-updated_at", "-pk"]
        indexes = [
            # A team's queue in update order, whatever statuses are filtered on top.
            models.Index(fields=["team", "-updated_at"], name="case_team_updated"),
            models.Index(fields=["team", "status", "-updated_at"], name="case_team_status_upd"),
            models.Index(fields=["assignee", "status", "-updated_at"], name="case_assignee_status"),
            models.Index(fields=["-updated_at", "-id"], name="case_updated"),
            # The queue's "by priority" order, read in index order like the one above.
            models.Index(
                PRIORITY_RANK.desc(), F("updated_at").desc(), F("id").desc(), name="case_priority"
            ),
            # Analytics: periods select on these, and open cases are counted from a small
            # partial index instead of the whole table.
            models.Index(fields=["resolved_at"], name="case_resolved_at"),
            models.Index(fields=["first_response_at"], name="case_first_response_at"),
            models.Index(
                fields=["team", "status", "priority", "assignee"],
                condition=models.Q(status__in=OPEN_CASE_STATUSES, merged_into__isnull=True),
                name="case_open_team",
            ),
            # SLA: the beat tick finds transitions from these partial indexes (only running
            # targets are in them); queues sort by the nearest deadline.
            models.Index(
                fields=["sla_first_response_risk_at"],
                condition=models.Q(sla_first_response_state="on_track"),
                name="case_sla_fr_risk",
            ),
            models.Index(
                fields=["sla_first_response_due"],
                condition=models.Q(sla_first_response_state__in=("on_track", "at_risk")),
                name="case_sla_fr_due",
            ),
            models.Index(
                fields=["sla_next_response_risk_at"],
                condition=models.Q(sla_next_response_state="on_track"),
                name="case_sla_nr_risk",
            ),
            models.Index(
                fields=["sla_next_response_due"],
                condition=models.Q(sla_next_response_state__in=("on_track", "at_risk")),
                name="case_sla_nr_due",
            ),
            models.Index(
                fields=["sla_resolution_risk_at"],
                condition=models.Q(sla_resolution_state="on_track"),
                name="case_sla_res_risk",
            ),
            models.Index(
                fields=["sla_resolution_due"],
                condition=models.Q(sla_resolution_state__in=("on_track", "at_risk")),
                name="case_sla_res_due",
            ),
            models.Index(fields=["team", "sla_due"], name="case_team_sla_due"),
        ]

    def __str__(self) -> str:
        return f"{self.number} {self.title}"

    @property
    def is_open(self) -> bool:
        return self.status not in (CaseStatus.RESOLVED, CaseStatus.CLOSED)

    @property
    def sla_flag(self) -> str:
        """The most pressing state among the case's SLA targets ('' without targets)."""
        states = {
            self.sla_first_response_state,
            self.sla_next_response_state,
            self.sla_resolution_state,
        }
        for state in (SlaState.BREACHED, SlaState.AT_RISK, SlaState.PAUSED, SlaState.ON_TRACK):
            if state in states:
                return state
        return SlaState.MET if SlaState.MET in states else ""

    @property
    def sla_flag_label(self) -> str:
        flag = self.sla_flag
        return SlaState(flag).label if flag else ""


class CaseLink(models.Model):
    """A relation between two cases, stored once (from the case that made it)."""

    from_case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="links_out")
    to_case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="links_in")
    kind = models.CharField(max_length=20, choices=LinkKind.choices, default=LinkKind.RELATED)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["from_case", "to_case"], name="cases_link_unique"),
            models.CheckConstraint(
                condition=~models.Q(from_case=models.F("to_case")), name="cases_link_not_self"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.from_case_id} {self.kind} {self.to_case_id}"


class CaseNote(models.Model):
    """An internal note on a case; @mentions notify the agents named."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(USER, null=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField()
    mentions = models.ManyToManyField(USER, blank=True, related_name="mentioned_in_notes")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"Note on {self.case_id} by {self.author_id}"


class Task(ChangeTracked):
    """A piece of work, on a case or on its own; synced to its assignee's task list."""

    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.CASCADE, related_name="tasks"
    )
    subject = models.CharField(max_length=300)
    description = models.TextField(blank=True)
    status = models.CharField(max_length=20, choices=TaskStatus.choices, default=TaskStatus.NEW)
    priority = models.CharField(max_length=10, choices=Priority.choices, default=Priority.NORMAL)
    category = models.CharField(max_length=100, blank=True)
    assignee = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="assigned_tasks"
    )
    due_at = models.DateTimeField(null=True, blank=True)
    remind_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)
    action_required = models.TextField(blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = WithoutSearchVector()

    class Meta(ChangeTracked.Meta):
        ordering = ["due_at", "pk"]
        indexes = [
            *ChangeTracked.Meta.indexes,
            models.Index(fields=["assignee", "status", "due_at"], name="task_assignee_status_due"),
            models.Index(fields=["due_at", "id"], name="task_due"),  # the task list
        ]

    def __str__(self) -> str:
        return self.subject


class ChecklistItem(models.Model):
    task = models.ForeignKey(Task, on_delete=models.CASCADE, related_name="checklist")
    text = models.CharField(max_length=300)
    done = models.BooleanField(default=False)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "pk"]

    def __str__(self) -> str:
        return f"[{'x' if self.done else ' '}] {self.text}"


class TimelineEvent(models.Model):
    """Append-only history of a case, written explicitly by the services (DESIGN.md habit 5).

    `data` holds what the event needs to be shown: field, old and new values, ids.
    """

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=30, choices=TimelineKind.choices)
    actor = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    summary = models.CharField(max_length=500)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["case", "created_at"], name="timeline_case_time")]

    def __str__(self) -> str:
        return self.summary


class CaseMessage(models.Model):
    """A mail message's place in the CRM: the case it belongs to (if any) and what intake
    decided. One row per message, which is what makes intake idempotent."""

    message = models.OneToOneField(
        "mailsync.Message", on_delete=models.CASCADE, related_name="case_link"
    )
    case = models.ForeignKey(
        Case, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    direction = models.CharField(max_length=10, choices=MessageDirection.choices)
    outcome = models.CharField(max_length=20, choices=IntakeOutcome.choices)
    sender = models.CharField(max_length=320, blank=True, help_text="Lowercased address.")
    reason = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        indexes = [
            models.Index(fields=["case", "created_at"], name="casemessage_case_time"),
            models.Index(
                fields=["sender", "outcome", "created_at"], name="casemessage_sender_rate"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_outcome_display()}: message {self.message_id}"


class CaseMessageId(models.Model):
    """Message-IDs that belong to a case (every message of it, and what we send), so that
    `In-Reply-To` and `References` thread a reply in one indexed lookup."""

    message_id = models.CharField(max_length=998)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="message_ids")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["message_id", "case"], name="casemessageid_unique")
        ]
        indexes = [models.Index(fields=["message_id"], name="casemessageid_lookup")]

    def __str__(self) -> str:
        return f"{self.message_id} → {self.case_id}"


class SavedView(models.Model):
    """A queue an agent saved: a name and the query string of the queue page's filters.

    The built-in views (mine, unassigned, my teams, awaiting customer, all) live in code
    (`cases.web.queues.BUILT_IN_VIEWS`); these are each agent's own.
    """

    owner = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="saved_views")
    name = models.CharField(max_length=80)
    query = models.CharField(max_length=2000, blank=True, help_text="The queue's query string.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["owner", "name"], name="savedview_owner_name_unique")
        ]

    def __str__(self) -> str:
        return self.name


DEFAULT_ACK_SUBJECT = "We received your request [{{ case.number }}]"
DEFAULT_ACK_BODY = """Hello {{ customer.name|default:"there" }},

thank you for writing to {{ team.name }}. Your request is now case {{ case.number }}:
"{{ case.title }}".

We will answer as soon as we can. To add anything, simply reply to this email and keep
{{ case.number }} in the subject.

{{ team.name }}"""


class AutoAcknowledgement(models.Model):
    """A team's automatic answer to the customer who opened a case by email (Django template
    syntax; variables: `case`, `customer`, `team`)."""

    team = models.OneToOneField("crm.Team", on_delete=models.CASCADE, related_name="auto_ack")
    enabled = models.BooleanField(default=True)
    subject = models.CharField(max_length=300, default=DEFAULT_ACK_SUBJECT)
    body = models.TextField(default=DEFAULT_ACK_BODY)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto-acknowledgement"

    def __str__(self) -> str:
        return f"Auto-acknowledgement of {self.team}"


class AutoAckSent(models.Model):
    """Each auto-acknowledgement sent: at most one per case, and one per address an hour."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="auto_acks")
    recipient = models.CharField(max_length=320)
    message = models.ForeignKey(
        "mailsync.Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    sent_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name = "auto-acknowledgement sent"
        verbose_name_plural = "auto-acknowledgements sent"
        constraints = [models.UniqueConstraint(fields=["case"], name="autoacksent_once_per_case")]
        indexes = [models.Index(fields=["recipient", "-sent_at"], name="autoacksent_recipient")]

    def __str__(self) -> str:
        return f"{self.case_id} → {self.recipient}"


# --- triage (cases.services.triage) -----------------------------------------------------------
# The choices live with the models they belong to until choices.py takes them in.


class TriageField(models.TextChoices):
    """The case fields a triage rule sets (the summary has no rules: it is extracted)."""

    PRIORITY = "priority", "Priority"
    CATEGORY = "category", "Category"
    SENTIMENT = "sentiment", "Sentiment"


class TriageMatch(models.TextChoices):
    KEYWORDS = "keywords", "Any of these keywords"
    PHRASE = "phrase", "This phrase"
    REGEX = "regex", "Regular expression"


class TriageWhere(models.TextChoices):
    SUBJECT = "subject", "Subject"
    BODY = "body", "Body"
    BOTH = "both", "Subject or body"
    SENDER_DOMAIN = "sender_domain", "Sender's domain"


class TriageSource(models.TextChoices):
    RULES = "rules", "Built-in rules"
    LLM = "llm", "Language model"


class Category(models.Model):
    """What a case is about (Billing, Incident, ...). Admins add them; triage rules and the
    language model choose among the active ones, agents set them on cases."""

    name = models.CharField(max_length=80, unique=True)
    team = models.ForeignKey(
        "crm.Team",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="categories",
        help_text="The team that usually handles these cases (informational).",
    )
    active = models.BooleanField(
        default=True, help_text="Inactive categories stay on old cases but are not suggested."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class TriageRule(models.Model):
    """One line of the built-in classifier's table: when `pattern` matches `where`, vote
    `weight` for `value` (or `category`) of `field`. Per field the value with the most weight
    wins; a tie goes to the rule with the lowest `order`."""

    field = models.CharField(max_length=20, choices=TriageField.choices)
    match_type = models.CharField(
        "match", max_length=20, choices=TriageMatch.choices, default=TriageMatch.KEYWORDS
    )
    pattern = models.TextField(
        help_text="Keywords: separated by commas or lines; whole words, case-insensitive, a "
        "trailing * matches word beginnings (refund* matches refunds). Phrase: the words in "
        "this order. Regular expression: Python syntax, case-insensitive. For the sender's "
        "domain, keywords are domains (a domain matches its subdomains too)."
    )
    where = models.CharField(max_length=20, choices=TriageWhere.choices, default=TriageWhere.BOTH)
    value = models.CharField(
        max_length=20, blank=True, help_text="The priority or sentiment this rule votes for."
    )
    category = models.ForeignKey(
        Category,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="rules",
        help_text="The category this rule votes for (category rules only).",
    )
    weight = models.PositiveSmallIntegerField(default=1)
    order = models.PositiveIntegerField(default=100, help_text="Lower wins a tie.")
    active = models.BooleanField(default=True)
    note = models.CharField(max_length=200, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["field", "order", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(field=TriageField.CATEGORY, category__isnull=False, value="")
                    | (
                        ~models.Q(field=TriageField.CATEGORY)
                        & models.Q(category__isnull=True)
                        & ~models.Q(value="")
                    )
                ),
                name="triagerule_value_fits_field",
            )
        ]

    def __str__(self) -> str:
        target = self.category.name if self.category_id else self.value
        return f"{self.get_field_display()} → {target}: {self.pattern[:60]}"


class TriageOverride(models.Model):
    """An agent changed a field triage had set: what was suggested, what they chose, and the
    rules behind the suggestion. Read in admin to tune the rules; never edited."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="triage_overrides")
    field = models.CharField(max_length=20, choices=TriageField.choices)
    suggested = models.CharField(max_length=80, blank=True)
    chosen = models.CharField(max_length=80, blank=True)
    source = models.CharField(max_length=10, choices=TriageSource.choices)
    rules = models.ManyToManyField(TriageRule, blank=True, related_name="overrides")
    agent = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [
            models.Index(fields=["field", "suggested", "chosen"], name="triageoverride_pair")
        ]

    def __str__(self) -> str:
        return f"{self.case_id} {self.field}: {self.suggested or '—'} → {self.chosen or '—'}"


class BusinessCalendar(models.Model):
    """Weekly business hours in a time zone, with holidays; SLA targets in business time
    count only these hours. Several calendars serve several regions."""

    name = models.CharField(max_length=100, unique=True)
    timezone = models.CharField(max_length=64, default="Europe/Berlin")
    is_default = models.BooleanField(default=False)
    holidays_url = models.URLField(
        blank=True, help_text="An iCalendar (.ics) address to import holidays from."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=models.Q(is_default=True),
                name="businesscalendar_one_default",
                violation_error_message="Another calendar is the default already.",
            )  # fmt: skip
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.timezone})"


class BusinessHours(models.Model):
    """One stretch of business hours on a weekday; an end at or before the start runs past
    midnight into the next day, 00:00–00:00 is the whole day."""

    calendar = models.ForeignKey(BusinessCalendar, on_delete=models.CASCADE, related_name="hours")
    weekday = models.PositiveSmallIntegerField(
        choices=[(0, "Monday"), (1, "Tuesday"), (2, "Wednesday"), (3, "Thursday"),
                 (4, "Friday"), (5, "Saturday"), (6, "Sunday")]
    )  # fmt: skip
    start = models.TimeField()
    end = models.TimeField()

    class Meta:
        ordering = ["weekday", "start"]
        verbose_name_plural = "business hours"

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start:%H:%M}–{self.end:%H:%M}"


class Holiday(models.Model):
    calendar = models.ForeignKey(
        BusinessCalendar, on_delete=models.CASCADE, related_name="holidays"
    )
    date = models.DateField()
    name = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["date"]
        constraints = [
            models.UniqueConstraint(fields=["calendar", "date"], name="holiday_calendar_date")
        ]

    def __str__(self) -> str:
        return f"{self.date} {self.name}"


class SlaPolicy(models.Model):
    """Targets for the cases it matches. Policies are tried in order; the first whose
    conditions all hold applies (an empty condition holds for every case), and the default
    policy catches the rest."""

    name = models.CharField(max_length=100, unique=True)
    order = models.PositiveIntegerField(default=100)
    active = models.BooleanField(default=True)
    is_default = models.BooleanField(
        default=False, help_text="The catch-all: applies when no other policy matches."
    )
    calendar = models.ForeignKey(
        BusinessCalendar, null=True, blank=True, on_delete=models.PROTECT, related_name="policies",
        help_text="Business hours of its targets in business time (default: the default calendar).",
    )  # fmt: skip
    priorities = models.JSONField(default=list, blank=True)
    types = models.JSONField(default=list, blank=True)
    channels = models.JSONField(default=list, blank=True)
    tiers = models.JSONField(default=list, blank=True, help_text="Organization tiers.")
    vip = models.CharField(max_length=10, choices=VipCondition.choices, blank=True, default="")
    teams = models.ManyToManyField("crm.Team", blank=True, related_name="+")
    tags = models.ManyToManyField(Tag, blank=True, related_name="+")
    pause_awaiting_customer = models.BooleanField(
        default=True, help_text="The clocks stop while the case awaits the customer."
    )
    pause_awaiting_vendor = models.BooleanField(
        default=False, help_text="The clocks stop while the case awaits a vendor."
    )
    at_risk_percent = models.PositiveSmallIntegerField(
        default=80, help_text="A target is at risk once this share of its time is used."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["order", "pk"]
        verbose_name = "SLA policy"
        verbose_name_plural = "SLA policies"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True),
                name="slapolicy_one_default",
                violation_error_message="Another policy is the default already.",
            ),
            models.CheckConstraint(
                condition=models.Q(at_risk_percent__gte=1, at_risk_percent__lte=99),
                name="slapolicy_at_risk_percent_range",
            ),
        ]  # fmt: skip

    def __str__(self) -> str:
        return self.name


class SlaTarget(models.Model):
    policy = models.ForeignKey(SlaPolicy, on_delete=models.CASCADE, related_name="targets")
    priority = models.CharField(max_length=10, choices=Priority.choices)
    metric = models.CharField(max_length=20, choices=SlaMetric.choices)
    minutes = models.PositiveIntegerField()
    business_time = models.BooleanField(
        default=True, help_text="Count only business hours (else around the clock)."
    )

    class Meta:
        ordering = ["policy", "metric", "priority"]
        constraints = [
            models.UniqueConstraint(
                fields=["policy", "priority", "metric"], name="slatarget_unique"
            ),
            models.CheckConstraint(condition=models.Q(minutes__gte=1), name="slatarget_minutes"),
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} {self.get_priority_display()}: {self.minutes} min"


class CaseStatusPeriod(models.Model):
    """How long a case was in each status: the history SLA pauses are derived from, compact
    enough to recompute every open case's deadlines after a policy or calendar change."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="status_periods")
    status = models.CharField(max_length=20, choices=CaseStatus.choices)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["case", "started_at"]
        indexes = [models.Index(fields=["case", "started_at"], name="statusperiod_case")]

    def __str__(self) -> str:
        return f"{self.case_id} {self.status} {self.started_at:%Y-%m-%d %H:%M}"


class CannedResponse(models.Model):
    """A macro: a reply an agent (or a workflow rule) drops into the composer, written once in
    Django template syntax with the case's variables, optionally also setting the case's status
    and adding tags. A team's macros are for its members; without a team, for everyone."""

    name = models.CharField(max_length=100)
    team = models.ForeignKey(
        "crm.Team",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="canned_responses",
        help_text="Empty: every agent may use it.",
    )
    subject = models.CharField(
        max_length=300, blank=True, help_text="Optional; plain text, same variables as the body."
    )
    body = models.TextField()
    set_status = models.CharField(
        max_length=20,
        choices=CaseStatus.choices,
        blank=True,
        default="",
        help_text="Applying the macro moves the case to this status.",
    )
    add_tags = models.JSONField(
        default=list, blank=True, help_text="Tags applying the macro adds to the case."
    )
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        USER, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "pk"]
        verbose_name = "canned response"
        # Two constraints, not one with nulls_distinct=False: SQLite (the embedded default)
        # cannot build that, while partial unique indexes work on both databases.
        constraints = [
            models.UniqueConstraint(
                fields=["team", "name"],
                condition=models.Q(team__isnull=False),
                name="cannedresponse_team_name",
                violation_error_message="This team has a canned response of that name already.",
            ),
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(team__isnull=True),
                name="cannedresponse_global_name",
                violation_error_message="A global canned response has that name already.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.team or 'global'})"


class ReplyDraft(models.Model):
    """What an agent is writing on a case (a reply, reply all, forward or internal note),
    saved as they type so that a reload, a crash or another device finds it again. One per
    agent and case; sending or discarding deletes it. Files picked for it are not kept."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="drafts")
    agent = models.ForeignKey(USER, on_delete=models.CASCADE, related_name="reply_drafts")
    mode = models.CharField(
        max_length=10,
        choices=[("reply", "Reply"), ("reply_all", "Reply all"), ("forward", "Forward"),
                 ("note", "Internal note")],
        default="reply",
    )  # fmt: skip
    to = models.CharField(max_length=2000, blank=True)
    cc = models.CharField(max_length=2000, blank=True)
    bcc = models.CharField(max_length=2000, blank=True)
    body = models.TextField(blank=True)
    message = models.ForeignKey(
        "mailsync.Message",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The message answered or forwarded (empty: the customer's latest).",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "agent"], name="replydraft_one_per_agent")
        ]

    def __str__(self) -> str:
        return f"{self.get_mode_display()} draft on {self.case_id} by {self.agent_id}"


# The workflow tables and the Airtable export's live in their own modules (this one is long
# enough); importing them here makes them the cases app's models.
from cases.airtable.models import (  # noqa: E402, F401
    AirtableExport,
    AirtableExportColumn,
    AirtableExportedRecord,
    AirtableExportRun,
)
from cases.workflow.models import (  # noqa: E402, F401
    RuleAction,
    RuleCondition,
    TaskTemplate,
    WebhookDelivery,
    WebhookEndpoint,
    WorkflowEvent,
    WorkflowRule,
    WorkflowRun,
)
