"""Services of the mail app: everything that changes mail state (DESIGN.md)."""

from mailsync.services.delegated import (
    ConnectRefused,
    ReconnectNeeded,
    connect_begin,
    connect_finish,
    grant_check,
    grant_disconnect,
    grants_keep_fresh,
)
from mailsync.services.health import mailboxes_alert_stale
from mailsync.services.inbound import (
    inbound_delivery_failed,
    inbound_receive,
    inbound_redeliver,
    inbound_requeue_stale,
)
from mailsync.services.local import inbound_deliver
from mailsync.services.mailboxes import folder_sync_set, mailbox_connect, mailbox_disconnect
from mailsync.services.recipient_stats import (
    StatsProgress,
    mailboxes_behind_recipient_stats,
    recipient_stats_rebuild,
    recipient_stats_soon,
    recipient_stats_update,
)
from mailsync.services.relay import outbound_due, outbound_relay, outbound_retry_now
from mailsync.services.sending import OutgoingFile, draft_save, draft_send, send_message
from mailsync.services.sync import (
    SUBSCRIPTION_KIND,
    MailboxSyncResult,
    folder_subscription_ensure,
    folder_sync,
    folder_tree_sync,
    folders_to_poll,
    mailbox_sync,
    mailboxes_to_sync,
    orphans_settle,
)
from mailsync.services.writeback import (
    mailboxes_with_pending_operations,
    message_delete,
    message_move,
    message_set_categories,
    message_set_flag,
    message_set_read,
    operations_apply,
)

__all__ = [
    "SUBSCRIPTION_KIND",
    "ConnectRefused",
    "ReconnectNeeded",
    "connect_begin",
    "connect_finish",
    "grant_check",
    "grant_disconnect",
    "grants_keep_fresh",
    "mailboxes_alert_stale",
    "mailboxes_to_sync",
    "OutgoingFile",
    "MailboxSyncResult",
    "draft_save",
    "draft_send",
    "folder_subscription_ensure",
    "folders_to_poll",
    "folder_sync",
    "folder_sync_set",
    "folder_tree_sync",
    "inbound_deliver",
    "inbound_delivery_failed",
    "inbound_receive",
    "inbound_redeliver",
    "inbound_requeue_stale",
    "mailbox_connect",
    "mailbox_disconnect",
    "mailbox_sync",
    "mailboxes_with_pending_operations",
    "message_delete",
    "message_move",
    "message_set_categories",
    "message_set_flag",
    "message_set_read",
    "operations_apply",
    "outbound_due",
    "outbound_relay",
    "outbound_retry_now",
    "send_message",
    "orphans_settle",
    "StatsProgress",
    "mailboxes_behind_recipient_stats",
    "recipient_stats_rebuild",
    "recipient_stats_soon",
    "recipient_stats_update",
]
