"""API routes of the mail app, mounted under /api/v1/ by crm/urls.py."""

from django.urls import path

from mailsync import oauth
from mailsync.api import (
    AttachmentContentView,
    AttachmentView,
    MessageDetailView,
    MessageListView,
    RecipientStatsView,
    SendView,
)

urlpatterns = [
    path("oauth/microsoft/login", oauth.microsoft_login, name="oauth-microsoft-login"),
    path("oauth/microsoft/callback", oauth.microsoft_callback, name="oauth-microsoft-callback"),
    path("mail/messages", MessageListView.as_view(), name="mail-messages"),
    path("mail/message/<int:pk>", MessageDetailView.as_view(), name="mail-message"),
    path("mail/send", SendView.as_view(), name="mail-send"),
    path("mail/recipient-stats", RecipientStatsView.as_view(), name="mail-recipient-stats"),
    path("mail/attachments/<int:pk>", AttachmentView.as_view(), name="mail-attachment-content"),
    path(
        "mail/message/<int:pk>/attachments/<int:attachment_pk>",
        AttachmentContentView.as_view(),
        name="mail-attachment",
    ),
]
