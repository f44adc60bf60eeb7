"""Machine-readable errors of the mail app (DESIGN.md habit 6)."""

from crm.errors import ServiceError


class MailboxError(ServiceError):
    code = "mailbox_invalid"


class MailboxNotFound(MailboxError):
    code = "mailbox_not_found"


class SyncBusy(ServiceError):
    """Another process is syncing this folder right now."""

    code = "sync_busy"
