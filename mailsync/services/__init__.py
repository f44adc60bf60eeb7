"""Services of the mail app: everything that changes mail state (DESIGN.md)."""

from mailsync.services.inbound import (
    inbound_delivery_failed,
    inbound_receive,
    inbound_redeliver,
    inbound_requeue_stale,
)
from mailsync.services.local import inbound_deliver
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
    "inbound_deliver",
    "inbound_delivery_failed",
    "inbound_receive",
    "inbound_redeliver",
    "inbound_requeue_stale",
    "mailbox_connect",
    "mailbox_sync",
    "orphans_settle",
]
