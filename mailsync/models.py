"""Mail: mailboxes (owned by a team or an agent), their folders, messages and attachments, and
the record of every sync round.

Messages and folders carry change numbers in their mailbox's container (DESIGN.md "Change
numbers"); a message that leaves the mailbox leaves a tombstone there. This app knows nothing
of cases: it announces new messages through `mailsync.signals.message_ingested`.
"""

from __future__ import annotations

import mimetypes
import re

from django.conf import settings
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Q
from django.db.models.functions import Lower
from django.utils import timezone

from crm.changes import ChangeTracked
from crm.fields import EncryptedTextField
from crm.models import ChangeContainer, Team
from mailsync.choices import (
    FlagStatus,
    Importance,
    InboundStatus,
    MailboxKind,
    OperationKind,
    OperationStatus,
    OutboundStatus,
    RecipientKind,
    RelaySecurity,
    RoundKind,
    RoundStatus,
    WellKnownFolder,
)

MIME_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9][a-z0-9!#$&^_.+-]*$")


class Mailbox(models.Model):
    """A shared (team) or personal (agent) mailbox, hosted by Microsoft 365 or by the CRM."""

    address = models.EmailField(unique=True)
    display_name = models.CharField(max_length=200, blank=True)
    kind = models.CharField(max_length=10, choices=MailboxKind.choices, default=MailboxKind.M365)
    team = models.ForeignKey(
        Team, null=True, blank=True, on_delete=models.PROTECT, related_name="mailboxes"
    )
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="mailboxes",
    )
    container = models.OneToOneField(
        ChangeContainer, on_delete=models.PROTECT, related_name="mailbox", editable=False
    )
    sync_enabled = models.BooleanField(
        default=True, help_text="Scheduled rounds skip a mailbox that is switched off."
    )
    folders_delta_link = models.TextField(blank=True, editable=False)
    last_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.TextField(blank=True, editable=False)
    last_clean_sync_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="The last mailbox round in which every folder synced without an error.",
    )  # fmt: skip
    outbox_lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    outbox_lease_expires_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="The process applying this mailbox's write-back outbox holds it until then.",
    )  # fmt: skip
    stale_alert_sent_at = models.DateTimeField(
        null=True, blank=True, editable=False,
        help_text="When admins were told this mailbox stopped syncing (cleared once it syncs).",
    )  # fmt: skip
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        verbose_name_plural = "mailboxes"
        constraints = [
            models.UniqueConstraint(Lower("address"), name="mailsync_mailbox_address_ci_unique"),
            models.CheckConstraint(
                condition=Q(team__isnull=True, owner__isnull=False)
                | Q(team__isnull=False, owner__isnull=True),
                name="mailsync_mailbox_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.address

    @property
    def is_m365(self) -> bool:
        return self.kind == MailboxKind.M365


class DelegatedGrant(models.Model):
    """An agent's consent for the CRM to use their own Microsoft 365 mailbox: MSAL's token cache
    (refresh token included) encrypted at rest, and the health of the connection.

    `reconnect_needed` is set when Microsoft refuses the refresh token for good (revoked,
    expired, consent withdrawn): syncing stops until the owner signs in again, instead of
    asking Microsoft every minute.
    """

    mailbox = models.OneToOneField(Mailbox, on_delete=models.CASCADE, related_name="grant")
    username = models.CharField(
        max_length=254, help_text="The Microsoft account that consented (preferred_username)."
    )
    account_id = models.CharField(max_length=255, help_text="MSAL's home account id.")
    tenant_id = models.CharField(max_length=64, blank=True)
    scopes = models.JSONField(default=list)
    token_cache = EncryptedTextField(blank=True)
    connected_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    connected_at = models.DateTimeField()
    last_token_at = models.DateTimeField(
        null=True, blank=True, help_text="The last time an access token was obtained."
    )
    refreshed_at = models.DateTimeField(
        null=True, blank=True, help_text="The last time the refresh token was redeemed."
    )
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    reconnect_needed = models.BooleanField(default=False)

    class Meta:
        verbose_name = "delegated access"
        verbose_name_plural = "delegated access"

    def __str__(self) -> str:
        return f"{self.mailbox.address} (signed in as {self.username})"


class MailFolder(ChangeTracked):
    """A folder of a mailbox, with its delta state. Inbox and Sent Items sync by default."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="folders")
    graph_id = models.CharField(max_length=512, blank=True)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    display_name = models.CharField(max_length=255)
    well_known = models.CharField(max_length=20, choices=WellKnownFolder.choices, blank=True)
    sync_enabled = models.BooleanField(default=False)
    delta_link = models.TextField(blank=True, editable=False)
    resume_link = models.TextField(
        blank=True,
        editable=False,
        help_text="The next page of an unfinished round; a crashed round resumes here.",
    )
    round_started_at = models.DateTimeField(null=True, blank=True, editable=False)
    full_round_mark = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False,
        help_text="The round that began the current full round (kept when it resumes).",
    )  # fmt: skip
    last_round_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Start of the last completed round."
    )
    lease_owner = models.CharField(max_length=64, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta(ChangeTracked.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "graph_id"],
                condition=~Q(graph_id=""),
                name="mailsync_folder_graph_id_unique",
            ),
            models.UniqueConstraint(
                fields=["mailbox", "well_known"],
                condition=~Q(well_known=""),
                name="mailsync_folder_role_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.mailbox.address}/{self.display_name}"


class InboundMessage(models.Model):
    """A message the SMTP listener accepted: the raw bytes and the envelope, written before `250`
    is answered (the durable spool), then delivered into local mailboxes by a worker.

    Delivery is idempotent (the row is locked and skipped once delivered), so a lost task or a
    crashed worker only delays a message: beat re-enqueues pending rows. The row stays after
    delivery as the raw MIME of the messages made from it (`Message.inbound`).
    """

    raw = models.BinaryField(help_text="The message as received, with our Received: line.")
    size = models.PositiveBigIntegerField(default=0)
    mail_from = models.CharField(
        max_length=998, blank=True, help_text="The envelope sender; empty for bounces (<>)."
    )
    rcpt_tos = models.JSONField(default=list, help_text="The accepted envelope recipients.")
    peer = models.CharField(max_length=100, blank=True)
    helo = models.CharField(max_length=255, blank=True)
    submitted_from = models.ForeignKey(
        "Mailbox", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Sent from the CRM as this local mailbox: it gets the Sent Items copy.",
    )  # fmt: skip
    authenticated_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The agent who submitted it through SMTP AUTH, if any.",
    )
    received_at = models.DateTimeField(default=timezone.now)
    status = models.CharField(
        max_length=10, choices=InboundStatus.choices, default=InboundStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    problem = models.TextField(blank=True)
    enqueued_at = models.DateTimeField(
        null=True, blank=True, help_text="When the sweeper last queued it again."
    )
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [
            models.Index(
                fields=["received_at"],
                condition=Q(status=InboundStatus.PENDING),
                name="mailsync_inbound_pending_idx",
            ),
            models.Index(fields=["-received_at"], name="mailsync_inbound_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"inbound {self.pk} from <{self.mail_from}> ({self.status})"


class MessageManager(models.Manager):
    """Leaves the tsvector out of ordinary reads: only the database's search uses it, and
    fetching it with every row would make each page of messages several times larger (as for
    cases, docs/decisions.md "Search")."""

    def get_queryset(self) -> models.QuerySet:
        return super().get_queryset().defer("search_vector")


class Message(ChangeTracked):
    """One message, stored once per mailbox however often it moves (immutable Graph id).

    `folder` is empty while a message that left a synced folder has not yet turned up in
    another one (`orphaned_at`); the sync decides, once every synced folder has had a round,
    whether it moved or was deleted.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="messages")
    folder = models.ForeignKey(
        MailFolder, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    graph_id = models.CharField(max_length=512, blank=True)
    orphaned_at = models.DateTimeField(null=True, blank=True)
    sync_mark = models.PositiveBigIntegerField(
        null=True, blank=True, editable=False, help_text="The last full round that listed it."
    )
    internet_message_id = models.CharField(max_length=998, blank=True)
    conversation_id = models.CharField(max_length=512, blank=True)
    in_reply_to = models.TextField(blank=True)
    references = models.TextField(blank=True)
    subject = models.TextField(blank=True)
    from_name = models.CharField(max_length=320, blank=True)
    from_address = models.CharField(max_length=320, blank=True)
    sender_address = models.CharField(max_length=320, blank=True)
    to = models.JSONField(default=list, blank=True)
    cc = models.JSONField(default=list, blank=True)
    bcc = models.JSONField(default=list, blank=True)
    reply_to = models.JSONField(default=list, blank=True)
    preview = models.TextField(blank=True)
    body_html = models.TextField(blank=True)
    body_text = models.TextField(blank=True)
    headers = models.JSONField(
        default=dict, blank=True, help_text="Internet headers kept for threading and intake."
    )
    headers_fetched = models.BooleanField(default=False)
    sent_at = models.DateTimeField(null=True, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    importance = models.CharField(
        max_length=10, choices=Importance.choices, default=Importance.NORMAL
    )
    is_read = models.BooleanField(default=False)
    is_draft = models.BooleanField(default=False)
    flag_status = models.CharField(
        max_length=12, choices=FlagStatus.choices, default=FlagStatus.NOT_FLAGGED
    )
    categories = models.JSONField(default=list, blank=True)
    has_attachments = models.BooleanField(default=False)
    # Local mailboxes: the spooled message this row was delivered from (its raw MIME), and
    # whether it is the sender's Sent Items copy of an authenticated submission.
    inbound = models.ForeignKey(
        InboundMessage, null=True, blank=True, on_delete=models.SET_NULL, related_name="messages"
    )
    sent_copy = models.BooleanField(default=False)
    parse_problems = models.JSONField(
        default=list, blank=True, help_text="What was malformed in the MIME and kept raw."
    )
    is_bounce = models.BooleanField(
        default=False, help_text="A delivery status notification (multipart/report)."
    )
    bounce_of_message_id = models.CharField(
        max_length=998, blank=True, help_text="The Message-ID of the message that bounced."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    # Subject, sender and the start of the body (PostgreSQL: trigger and GIN index of
    # migration 0006; an unused column on SQLite, as for cases).
    search_vector = SearchVectorField(
        null=True, editable=False, help_text="Kept current by a PostgreSQL trigger."
    )

    objects = MessageManager()

    class Meta(ChangeTracked.Meta):
        indexes = [
            *ChangeTracked.Meta.indexes,
            models.Index(fields=["folder", "-received_at", "-id"], name="mailsync_msg_folder_idx"),
            models.Index(
                fields=["mailbox", "-received_at", "-id"], name="mailsync_msg_mailbox_idx"
            ),
            models.Index(fields=["mailbox", "internet_message_id"], name="mailsync_msg_imid_idx"),
            models.Index(fields=["mailbox", "conversation_id"], name="mailsync_msg_conv_idx"),
            models.Index(
                fields=["mailbox"],
                condition=Q(orphaned_at__isnull=False),
                name="mailsync_msg_orphan_idx",
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "graph_id"],
                condition=~Q(graph_id=""),
                name="mailsync_message_graph_id_unique",
            ),
            # Delivery is idempotent: one row per mailbox (and copy) for each spooled message.
            models.UniqueConstraint(
                fields=["mailbox", "inbound", "sent_copy"],
                condition=Q(inbound__isnull=False),
                name="mailsync_message_inbound_unique",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} <{self.from_address}>"


class Attachment(models.Model):
    """An attachment's metadata. Graph's bytes come on first use; a local message's are saved
    when it is delivered (inline parts, referenced from the HTML by Content-ID, included)."""

    message = models.ForeignKey(Message, on_delete=models.CASCADE, related_name="attachments")
    graph_id = models.CharField(max_length=512, blank=True)
    name = models.CharField(max_length=255, blank=True)
    content_type = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(default=0)
    is_inline = models.BooleanField(default=False)
    content_id = models.CharField(max_length=255, blank=True)
    content = models.FileField(upload_to="mail/attachments/%Y/%m/", blank=True)
    fetched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "graph_id"],
                condition=~Q(graph_id=""),
                name="mailsync_attachment_graph_id_unique",
            )
        ]

    def __str__(self) -> str:
        return self.name or f"attachment {self.pk}"

    def served_content_type(self) -> str:
        """The type to serve the bytes with: the stored one if it is a well-formed
        `type/subtype` (parameters dropped; it came from the sender), else a guess from the
        name, else `application/octet-stream`."""
        value = self.content_type.split(";")[0].strip().lower()
        if MIME_TYPE.match(value):
            return value
        guessed, _ = mimetypes.guess_type(self.name or "")
        return guessed or "application/octet-stream"


class SyncRound(models.Model):
    """One sync round of a folder (or of a mailbox's folder tree), with its progress."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="rounds")
    folder = models.ForeignKey(
        MailFolder, null=True, blank=True, on_delete=models.SET_NULL, related_name="rounds"
    )
    kind = models.CharField(max_length=10, choices=RoundKind.choices)
    status = models.CharField(
        max_length=10, choices=RoundStatus.choices, default=RoundStatus.RUNNING
    )
    started_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    pages = models.PositiveIntegerField(default=0)
    added = models.PositiveIntegerField(default=0)
    updated = models.PositiveIntegerField(default=0)
    removed = models.PositiveIntegerField(default=0)
    requests = models.PositiveIntegerField(default=0)
    throttled = models.PositiveIntegerField(default=0)
    retries = models.PositiveIntegerField(default=0)
    errors = models.TextField(blank=True)

    class Meta:
        indexes = [models.Index(fields=["mailbox", "-started_at"], name="mailsync_round_recent")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.folder or self.mailbox} ({self.status})"


class MailOperation(models.Model):
    """The outbox of write-back: a change made in the CRM to a Microsoft 365 message, written
    in the same transaction as the local change and applied to Graph by the worker, in order.

    Rows stay after they are applied (done or failed) so an admin can see what happened; the
    graph id is kept because the message row may be gone (a permanent delete).
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="operations")
    message = models.ForeignKey(
        Message, null=True, blank=True, on_delete=models.SET_NULL, related_name="operations"
    )
    graph_id = models.CharField(max_length=512)
    kind = models.CharField(max_length=12, choices=OperationKind.choices)
    payload = models.JSONField(default=dict, blank=True)
    status = models.CharField(
        max_length=10, choices=OperationStatus.choices, default=OperationStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    applied_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["mailbox", "status", "id"], name="mailop_queue")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.graph_id[:20]}… ({self.get_status_display()})"


class SmtpRelay(models.Model):
    """The SMTP server local mailboxes send external mail through (a smarthost: the ISP's, a
    transactional mail service, the company's Exchange). The default relay serves every
    local mailbox."""

    name = models.CharField(max_length=100, unique=True)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField(default=587)
    security = models.CharField(
        max_length=10, choices=RelaySecurity.choices, default=RelaySecurity.STARTTLS
    )
    username = models.CharField(max_length=255, blank=True)
    password = EncryptedTextField(blank=True)
    timeout_seconds = models.PositiveIntegerField(default=30)
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "SMTP relay"
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"],
                condition=Q(is_default=True),
                name="mailsync_one_default_relay",
                violation_error_message="Another relay is the default already.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.host}:{self.port})"


class OutboundMessage(models.Model):
    """The outbound queue of local mailboxes: one message for its external recipients, queued
    in the transaction that stored the Sent Items copy and handed to the relay by a worker,
    with retries; what the relay refused stays visible in admin."""

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="outbound")
    message = models.ForeignKey(
        "Message", null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound",
        help_text="The Sent Items copy.",
    )  # fmt: skip
    relay = models.ForeignKey(SmtpRelay, null=True, blank=True, on_delete=models.SET_NULL)
    mail_from = models.CharField(max_length=320)
    rcpt_tos = models.JSONField(default=list)
    raw = models.BinaryField()
    internet_message_id = models.CharField(max_length=998, blank=True)
    status = models.CharField(
        max_length=10, choices=OutboundStatus.choices, default=OutboundStatus.QUEUED
    )
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(default=timezone.now)
    last_error = models.TextField(blank=True)
    refused = models.JSONField(
        default=dict, blank=True, help_text="Recipients the relay refused, with its answer."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "outbound message"
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="queued"),
                name="mailsync_outbound_queued_idx",
            )
        ]

    def __str__(self) -> str:
        return f"{self.mail_from} → {', '.join(self.rcpt_tos[:3])} ({self.status})"


class SentRecipient(models.Model):
    """One recipient of one sent message: a row per (message, address, kind) of every message
    in a mailbox's Sent Items (drafts excluded), kept from the mailbox's change numbers by
    `mailsync.services.recipient_stats`.

    `message` has no database constraint and no cascade on purpose: when a message is deleted
    its rows stay until the update reads the message's tombstone, because only these rows
    still say which recipients' statistics the deletion changes. The update removes them
    then; a mailbox's rows go with the mailbox.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="+")
    message = models.ForeignKey(
        Message, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    address = models.CharField(max_length=320, help_text="Lower-cased, trimmed.")
    domain = models.CharField(max_length=320)
    kind = models.CharField(max_length=3, choices=RecipientKind.choices)
    sent_at = models.DateTimeField(help_text="The message's sent time (else its received time).")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["message", "address", "kind"], name="mailsync_sentrecipient_unique"
            )
        ]
        indexes = [
            # Recomputing the statistics of the addresses a change touched.
            models.Index(fields=["mailbox", "address"], name="mailsync_sentrcpt_addr_idx")
        ]

    def __str__(self) -> str:
        return f"{self.kind}: {self.address} (message {self.message_id})"


class RecipientStat(models.Model):
    """What one mailbox sent to one address: counts per kind and in all, first and last time.

    An aggregate of `SentRecipient`, recomputed for the addresses each change touches. The
    columns are named `*_count` and `first_sent`/`last_sent` so that selectors can sum them
    over mailboxes under the API's names (`sent_to`, `first_sent_at`...): Django refuses an
    annotation named like a field.
    """

    mailbox = models.ForeignKey(Mailbox, on_delete=models.CASCADE, related_name="recipient_stats")
    address = models.CharField(max_length=320)
    domain = models.CharField(max_length=320)
    to_count = models.PositiveIntegerField("sent to", default=0)
    cc_count = models.PositiveIntegerField("sent cc", default=0)
    bcc_count = models.PositiveIntegerField("sent bcc", default=0)
    total_count = models.PositiveIntegerField("sent in all", default=0)
    first_sent = models.DateTimeField("first sent")
    last_sent = models.DateTimeField("last sent")

    class Meta:
        verbose_name = "recipient statistic"
        constraints = [
            models.UniqueConstraint(
                fields=["mailbox", "address"], name="mailsync_recipientstat_unique"
            )
        ]
        indexes = [models.Index(fields=["mailbox", "domain"], name="mailsync_rcptstat_domain_idx")]

    def __str__(self) -> str:
        return f"{self.address}: {self.total_count} sent"


class RecipientStatCursor(models.Model):
    """The last change number of a mailbox's container whose Sent Items effect is in the
    statistics. Its row is locked by whoever updates or rebuilds them, so they never run
    twice at once for a mailbox."""

    mailbox = models.OneToOneField(
        Mailbox, on_delete=models.CASCADE, related_name="recipient_stat_cursor"
    )
    last_seq = models.PositiveBigIntegerField(default=0)
    updated_at = models.DateTimeField(null=True, blank=True)
    rebuilt_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"recipient statistics of mailbox {self.mailbox_id} at {self.last_seq}"
