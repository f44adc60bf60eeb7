"""Services of the mail app: everything that changes mail state (DESIGN.md)."""

from mailsync.services.mailboxes import folder_sync_set, mailbox_connect
from mailsync.services.sync import (
    MailboxSyncResult,
    folder_sync,
    folder_tree_sync,
    mailbox_sync,
    orphans_settle,
)

__all__ = [
    "MailboxSyncResult",
    "folder_sync",
    "folder_sync_set",
    "folder_tree_sync",
    "mailbox_connect",
    "mailbox_sync",
    "orphans_settle",
]
