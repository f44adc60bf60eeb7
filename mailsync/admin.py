"""Mail in the admin: connect mailboxes, choose synced folders, start a round, and watch the
rounds' progress. Messages are read-only here (they change through sync and services)."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html

from crm.admin import ScopedAdminMixin, adopt, is_admin
from crm.alerts import AdminNotice, admin_notice_provider
from mailsync import selectors, services
from mailsync.models import (
    DelegatedGrant,
    InboundMessage,
    Mailbox,
    MailFolder,
    MailOperation,
    Message,
    OutboundMessage,
    RecipientStat,
    SmtpRelay,
    SyncRound,
)


class MailboxAddForm(forms.ModelForm):
    class Meta:
        model = Mailbox
        fields = ["address", "display_name", "kind", "team", "owner", "sync_enabled"]

    def clean(self) -> dict:
        data = super().clean()
        if (data.get("team") is None) == (data.get("owner") is None):
            raise forms.ValidationError("A mailbox belongs to a team or to an agent: choose one.")
        return data


class FolderInline(admin.TabularInline):
    model = MailFolder
    fields = ["display_name", "well_known", "parent", "sync_enabled", "last_round_at"]
    readonly_fields = ["display_name", "well_known", "parent", "last_round_at"]
    extra = 0
    can_delete = False
    ordering = ["display_name"]
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj: Mailbox | None = None) -> bool:
        return False


@admin.register(Mailbox)
class MailboxAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["address", "kind", "team", "owner", "sync_enabled", "access",
                    "last_clean_sync_at", "status"]  # fmt: skip
    list_filter = ["kind", "sync_enabled", "team", "grant__reconnect_needed"]
    search_fields = ["address", "display_name"]
    list_select_related = ["team", "owner", "grant"]
    actions = ["sync_now", "check_sign_in", "rebuild_recipient_stats"]

    def delete_model(self, request: HttpRequest, obj: Mailbox) -> None:
        services.mailbox_disconnect(mailbox=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Mailbox]) -> None:
        for mailbox in queryset:
            services.mailbox_disconnect(mailbox=mailbox)

    readonly_fields = ["last_synced_at", "last_error"]

    def visible(self, request: HttpRequest) -> QuerySet[Mailbox]:
        return selectors.mailbox_list(user=request.user)

    def manageable(self, request: HttpRequest) -> QuerySet[Mailbox]:
        return self.visible(request) if is_admin(request) else Mailbox.objects.none()

    def get_form(self, request: HttpRequest, obj: Mailbox | None = None, **kwargs):
        if obj is None:
            kwargs["form"] = MailboxAddForm
        return super().get_form(request, obj, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Mailbox | None = None) -> list[str]:
        if obj is None:
            return list(MailboxAddForm.Meta.fields)
        return ["address", "display_name", "kind", "team", "owner", "sync_enabled",
                "last_synced_at", "last_clean_sync_at", "last_error"]  # fmt: skip

    def get_readonly_fields(self, request: HttpRequest, obj: Mailbox | None = None) -> list[str]:
        if obj is None:
            return []
        return ["address", "kind", "team", "owner", "last_synced_at", "last_clean_sync_at",
                "last_error"]  # fmt: skip

    def get_inlines(self, request: HttpRequest, obj: Mailbox | None):
        if obj is None:
            return []
        return [GrantInline, FolderInline] if hasattr(obj, "grant") else [FolderInline]

    def save_model(self, request: HttpRequest, obj: Mailbox, form, change: bool) -> None:
        if change:
            obj.save(update_fields=["display_name", "sync_enabled"])
            return
        data = form.cleaned_data
        saved = services.mailbox_connect(
            address=data["address"], team=data.get("team"), owner=data.get("owner"),
            local=data["kind"] == "local", display_name=data.get("display_name", ""),
        )  # fmt: skip
        if not data.get("sync_enabled", True):
            Mailbox.objects.filter(pk=saved.pk).update(sync_enabled=False)
            saved.sync_enabled = False
        adopt(obj, saved)

    def save_formset(self, request: HttpRequest, form, formset, change: bool) -> None:
        """Folder opt-in/out goes through `folder_sync_set` (it forgets or orphans state)."""
        if formset.model is not MailFolder:
            super().save_formset(request, form, formset, change)
            return
        for folder_form in formset.forms:
            if "sync_enabled" in folder_form.changed_data:
                services.folder_sync_set(
                    folder=folder_form.instance, enabled=folder_form.cleaned_data["sync_enabled"]
                )
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []

    @admin.display(description="Access")
    def access(self, mailbox: Mailbox) -> str:
        """Whose sign-in the mailbox syncs with, and whether its owner must connect it again."""
        if not mailbox.is_m365:
            return "hosted by the CRM"
        grant = getattr(mailbox, "grant", None)
        if grant is None:
            return "app (shared)"
        if grant.reconnect_needed:
            return format_html(
                '<strong style="color:#b3261e" title="{}">reconnect needed</strong>',
                grant.last_error[:500],
            )
        return format_html("agent's sign-in ({})", grant.username)

    @admin.display(description="Last round")
    def status(self, mailbox: Mailbox) -> str:
        if mailbox.last_error:
            return format_html('<span title="{}">failed</span>', mailbox.last_error[:500])
        return "ok" if mailbox.last_synced_at else "never"

    @admin.action(description="Sync selected mailboxes now")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Mailbox]) -> None:
        from mailsync.tasks import sync_mailbox

        ids = list(queryset.filter(kind="m365").values_list("pk", flat=True))
        for mailbox_id in ids:
            transaction.on_commit(lambda mailbox_id=mailbox_id: sync_mailbox.delay(mailbox_id))
        self.message_user(
            request,
            f"A sync round was queued for {len(ids)} mailbox(es); follow it under Sync rounds.",
            messages.SUCCESS,
        )

    @admin.action(description="Check the agent's sign-in now")
    def check_sign_in(self, request: HttpRequest, queryset: QuerySet[Mailbox]) -> None:
        """Redeem the refresh token of each selected agent's mailbox and report the outcome."""
        for mailbox in queryset.filter(grant__isnull=False):
            grant = services.grant_check(mailbox=mailbox)
            if grant.last_error:
                self.message_user(request, f"{mailbox}: {grant.last_error}", messages.ERROR)
            else:
                self.message_user(request, f"{mailbox}: the sign-in works.", messages.SUCCESS)

    @admin.action(description="Rebuild recipient statistics", permissions=["change"])
    def rebuild_recipient_stats(self, request: HttpRequest, queryset: QuerySet[Mailbox]) -> None:
        """From each selected mailbox's Sent Items, in the worker (a large mailbox takes a
        while); the statistics keep their old figures until the rebuild commits."""
        from mailsync.tasks import rebuild_recipient_stats

        ids = list(queryset.order_by("pk").values_list("pk", flat=True))
        for mailbox_id in ids:
            transaction.on_commit(
                lambda mailbox_id=mailbox_id: rebuild_recipient_stats.delay(mailbox_id)
            )
        self.message_user(
            request,
            f"Recipient statistics will be rebuilt for {len(ids)} mailbox(es).",
            messages.SUCCESS,
        )


class GrantInline(admin.StackedInline):
    """The health of an agent's sign-in; only the agent can renew it (from their profile)."""

    model = DelegatedGrant
    can_delete = False
    fields = ["username", "connected_by", "connected_at", "last_token_at", "refreshed_at",
              "reconnect_needed", "last_error", "last_error_at", "scopes"]  # fmt: skip
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Mailbox | None = None) -> bool:
        return False


@admin.register(Message)
class MessageAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["subject_or_none", "from_address", "mailbox", "folder", "received_at",
                    "is_read", "has_attachments"]  # fmt: skip
    list_filter = ["mailbox", "is_read", "flag_status", "importance"]
    search_fields = ["subject", "from_address", "internet_message_id"]
    list_select_related = ["mailbox", "folder", "folder__mailbox"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    exclude = ["body_html"]
    readonly_fields = [f.name for f in Message._meta.concrete_fields if f.name != "body_html"]

    def visible(self, request: HttpRequest) -> QuerySet[Message]:
        return selectors.message_list(user=request.user).defer("body_html", "body_text")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Message | None = None) -> bool:
        return False

    @admin.display(description="Subject", ordering="subject")
    def subject_or_none(self, message: Message) -> str:
        return message.subject or "(no subject)"


@admin.register(SyncRound)
class SyncRoundAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Every round with its progress: a running round's counts grow page by page."""

    list_display = ["started_at", "mailbox", "folder", "kind", "status", "pages", "added",
                    "updated", "removed", "requests", "throttled", "duration"]  # fmt: skip
    list_filter = ["status", "kind", "mailbox"]
    list_select_related = ["mailbox", "folder", "folder__mailbox"]
    readonly_fields = [f.name for f in SyncRound._meta.concrete_fields]
    show_full_result_count = False

    def visible(self, request: HttpRequest) -> QuerySet[SyncRound]:
        return SyncRound.objects.filter(mailbox__in=selectors.mailbox_list(user=request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: SyncRound | None = None) -> bool:
        return False

    @admin.display(description="Duration")
    def duration(self, sync_round: SyncRound) -> str:
        if sync_round.finished_at is None:
            return "running"
        return f"{(sync_round.finished_at - sync_round.started_at).total_seconds():.1f} s"


@admin.register(RecipientStat)
class RecipientStatAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Who each mailbox sent mail to (read-only: kept from Sent Items; a mailbox's action
    rebuilds them)."""

    list_display = ["address", "domain", "mailbox", "to_count", "cc_count", "bcc_count",
                    "total_count", "first_sent", "last_sent"]  # fmt: skip
    list_filter = ["mailbox"]
    search_fields = ["address", "domain"]
    list_select_related = ["mailbox"]
    ordering = ["address", "mailbox"]
    show_full_result_count = False
    readonly_fields = [f.name for f in RecipientStat._meta.concrete_fields]

    def visible(self, request: HttpRequest) -> QuerySet[RecipientStat]:
        return RecipientStat.objects.filter(mailbox__in=selectors.mailbox_list(user=request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(InboundMessage)
class InboundMessageAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """The SMTP listener's spool: what arrived, for whom, and whether it was delivered. Only
    admins see it (it holds mail for every local mailbox); failed messages can be delivered
    again."""

    list_display = ["received_at", "mail_from", "recipients", "size", "status", "attempts",
                    "peer"]  # fmt: skip
    list_filter = ["status"]
    search_fields = ["mail_from", "peer"]
    date_hierarchy = "received_at"
    show_full_result_count = False
    exclude = ["raw"]
    readonly_fields = [f.name for f in InboundMessage._meta.concrete_fields if f.name != "raw"]
    actions = ["deliver_again"]

    def visible(self, request: HttpRequest) -> QuerySet[InboundMessage]:
        queryset = InboundMessage.objects.defer("raw")
        return queryset if is_admin(request) else queryset.none()

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.display(description="Recipients")
    def recipients(self, inbound: InboundMessage) -> str:
        return ", ".join(inbound.rcpt_tos[:3]) + (" …" if len(inbound.rcpt_tos) > 3 else "")

    @admin.action(description="Deliver the selected failed messages again")
    def deliver_again(self, request: HttpRequest, queryset: QuerySet[InboundMessage]) -> None:
        queued = sum(services.inbound_redeliver(inbound=inbound) for inbound in queryset)
        self.message_user(request, f"{queued} message(s) queued for delivery.", messages.SUCCESS)


@admin.register(MailOperation)
class MailOperationAdmin(admin.ModelAdmin):
    """The write-back outbox: what the CRM changed on Microsoft 365 messages and whether Graph
    took it. A failed operation's message was read back from Graph (see its error)."""

    list_display = ["created_at", "mailbox", "kind", "status", "attempts", "applied_at", "actor"]
    list_filter = ["status", "kind", "mailbox"]
    search_fields = ["graph_id", "last_error"]
    readonly_fields = [field.name for field in MailOperation._meta.fields]
    actions = ["apply_now"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Apply the pending operations of their mailboxes now")
    def apply_now(self, request: HttpRequest, queryset: QuerySet[MailOperation]) -> None:
        from mailsync.tasks import apply_operations

        mailboxes = set(queryset.values_list("mailbox_id", flat=True))
        for mailbox_id in mailboxes:
            apply_operations.delay(mailbox_id)
        self.message_user(request, f"Queued {len(mailboxes)} mailbox(es).")


@admin_notice_provider
def mailbox_notices(request: HttpRequest) -> list[AdminNotice]:
    """Mailboxes that stopped syncing, on the admin index (the email goes out once; this
    stays until they sync again)."""
    if not request.user.has_perm("mailsync.view_mailbox"):
        return []
    stale = list(selectors.mailboxes_stale().values_list("address", flat=True)[:6])
    if not stale:
        return []
    shown = ", ".join(stale[:5]) + (" and more" if len(stale) > 5 else "")
    return [
        AdminNotice(
            level="warning",
            text=f"Not synced for over {settings.MAILBOX_SYNC_ALERT_MINUTES} minutes: {shown}.",
            url=reverse("admin:mailsync_mailbox_changelist"),
            link_text="Mailboxes",
        )
    ]


class SmtpRelayForm(forms.ModelForm):
    """The password is write-only: left empty, the stored one stays."""

    password = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="Stored encrypted. Leave empty to keep the current password.",
    )

    class Meta:
        model = SmtpRelay
        fields = ["name", "host", "port", "security", "username", "password", "timeout_seconds",
                  "is_default"]  # fmt: skip

    def clean_password(self) -> str:
        return self.cleaned_data["password"] or (self.instance.password if self.instance else "")

    def clean(self) -> dict:
        cleaned = super().clean()
        if cleaned.get("username") and not cleaned.get("password"):
            self.add_error("password", "A relay with a user name needs its password.")
        if cleaned.get("security") == "none" and cleaned.get("username"):
            self.add_error("security", "Credentials are never sent without TLS.")
        return cleaned


@admin.register(SmtpRelay)
class SmtpRelayAdmin(admin.ModelAdmin):
    """Where local mailboxes send mail for other domains (Mail → SMTP relays); model
    permissions keep it to admins."""

    form = SmtpRelayForm
    list_display = ["name", "host", "port", "security", "username", "is_default"]


@admin.register(OutboundMessage)
class OutboundMessageAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """The outbound queue of local mailboxes: what waits for the relay, what it refused."""

    list_display = ["created_at", "mailbox", "recipients", "status", "attempts",
                    "next_attempt_at", "last_error"]  # fmt: skip
    list_filter = ["status", "mailbox"]
    list_select_related = ["mailbox"]
    search_fields = ["mail_from", "internet_message_id"]
    exclude = ["raw"]
    readonly_fields = ["mailbox", "message", "relay", "mail_from", "rcpt_tos",
                       "internet_message_id", "status", "attempts", "next_attempt_at",
                       "last_error", "refused", "created_at", "sent_at"]  # fmt: skip
    actions = ["retry_now"]

    def visible(self, request: HttpRequest) -> QuerySet[OutboundMessage]:
        return OutboundMessage.objects.filter(
            mailbox__in=selectors.mailbox_list(user=request.user)
        ).defer("raw")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="To")
    def recipients(self, outbound: OutboundMessage) -> str:
        shown = ", ".join(outbound.rcpt_tos[:3])
        return shown + (
            f" and {len(outbound.rcpt_tos) - 3} more" if len(outbound.rcpt_tos) > 3 else ""
        )

    @admin.action(description="Send selected messages again now")
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        count = 0
        for outbound in queryset.exclude(status="sent"):
            services.outbound_retry_now(outbound=outbound)
            count += 1
        self.message_user(request, f"{count} message(s) queued for the relay.", messages.SUCCESS)
