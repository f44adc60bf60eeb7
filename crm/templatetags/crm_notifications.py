"""`{% unread_notification_count as unread %}`: the bell's number, for base.html.

A tag rather than a context processor so that only pages that draw the bell pay its query.
"""

from __future__ import annotations

from django import template

from crm import notifications

register = template.Library()


@register.simple_tag(takes_context=True)
def unread_notification_count(context: template.Context) -> int:
    user = context.get("user")
    return notifications.unread_count(user) if user is not None else 0
