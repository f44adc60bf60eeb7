"""Every state change of the cases app (DESIGN.md "Inside an app"): plain functions with
keyword arguments, one transaction each, writing the timeline explicitly.

Callers import from here: `from cases import services; services.case_assign(...)`.
"""

from cases.services.cases import (
    case_add_note,
    case_add_watcher,
    case_assign,
    case_assign_round_robin,
    case_change_status,
    case_create,
    case_delete,
    case_link,
    case_merge,
    case_remove_watcher,
    case_set_parent,
    case_set_tags,
    case_unlink,
    case_update,
)
from cases.services.customers import (
    customer_add_email,
    customer_create,
    customer_delete,
    customer_remove_email,
    customer_set_phones,
    customer_touch,
    customer_update,
    organization_create,
    organization_set_domains,
)
from cases.services.intake import case_message_received, customer_for_address, message_intake
from cases.services.macros import macro_apply, macro_render, macro_validate
from cases.services.replies import auto_ack_send, case_forward, case_reply, case_send_automatic
from cases.services.saved_views import saved_view_delete, saved_view_save
from cases.services.tasks import (
    task_assign,
    task_change_status,
    task_create,
    task_delete,
    task_from_message,
    task_set_checklist,
    task_update,
)

__all__ = [
    "auto_ack_send",
    "case_forward",
    "case_reply",
    "case_send_automatic",
    "case_add_note",
    "case_add_watcher",
    "case_assign",
    "case_assign_round_robin",
    "case_change_status",
    "case_create",
    "case_delete",
    "case_link",
    "case_message_received",
    "case_merge",
    "case_remove_watcher",
    "case_set_parent",
    "case_set_tags",
    "case_unlink",
    "case_update",
    "macro_apply",
    "macro_render",
    "macro_validate",
    "customer_add_email",
    "customer_create",
    "customer_delete",
    "customer_for_address",
    "customer_remove_email",
    "customer_set_phones",
    "customer_touch",
    "customer_update",
    "organization_create",
    "organization_set_domains",
    "saved_view_delete",
    "saved_view_save",
    "task_assign",
    "task_change_status",
    "task_create",
    "task_delete",
    "task_from_message",
    "message_intake",
    "task_set_checklist",
    "task_update",
]
