"""Choices of the mail app (DESIGN.md habit 6)."""

from django.db import models


class MailboxKind(models.TextChoices):
    M365 = "m365", "Microsoft 365"
    LOCAL = "local", "Local (the CRM's SMTP listener)"


class WellKnownFolder(models.TextChoices):
    """Graph's well-known folder names; they are also the roles the CRM gives folders."""

    INBOX = "inbox", "Inbox"
    SENT = "sentitems", "Sent Items"
    DRAFTS = "drafts", "Drafts"
    DELETED = "deleteditems", "Deleted Items"
    ARCHIVE = "archive", "Archive"
    JUNK = "junkemail", "Junk Email"


# Synced by default; an admin opts other folders in.
DEFAULT_SYNCED_FOLDERS = frozenset({WellKnownFolder.INBOX, WellKnownFolder.SENT})


class Importance(models.TextChoices):
    LOW = "low", "Low"
    NORMAL = "normal", "Normal"
    HIGH = "high", "High"


class FlagStatus(models.TextChoices):
    NOT_FLAGGED = "notFlagged", "Not flagged"
    FLAGGED = "flagged", "Flagged"
    COMPLETE = "complete", "Complete"


class RoundKind(models.TextChoices):
    FOLDERS = "folders", "Folder tree"
    DELTA = "delta", "Delta"
    FULL = "full", "Full resync"


class InboundStatus(models.TextChoices):
    """Where a message the SMTP listener accepted stands in the durable spool."""

    PENDING = "pending", "Pending delivery"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


class RoundStatus(models.TextChoices):
    RUNNING = "running", "Running"
    OK = "ok", "Completed"
    FAILED = "failed", "Failed"


class OperationKind(models.TextChoices):
    """What an agent did to a Microsoft 365 message, to be done in Graph too (the outbox)."""

    READ = "read", "Mark read or unread"
    FLAG = "flag", "Flag"
    CATEGORIES = "categories", "Categories"
    MOVE = "move", "Move"
    DELETE = "delete", "Delete"


class OperationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DONE = "done", "Done in Microsoft 365"
    FAILED = "failed", "Refused by Microsoft 365 (local state corrected)"


class RelaySecurity(models.TextChoices):
    STARTTLS = "starttls", "STARTTLS (port 587)"
    TLS = "tls", "Implicit TLS (port 465)"
    NONE = "none", "None (a relay on a trusted network only)"


class OutboundStatus(models.TextChoices):
    """Where a message for external recipients of a local mailbox stands in the relay queue."""

    QUEUED = "queued", "Queued"
    SENT = "sent", "Handed to the relay"
    FAILED = "failed", "Failed (the relay refused it for good, or retries ran out)"


class RecipientKind(models.TextChoices):
    """How a sent message addressed a recipient (sent-mail statistics)."""

    TO = "to", "To"
    CC = "cc", "Cc"
    BCC = "bcc", "Bcc"
