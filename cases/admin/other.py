"""Tags, links, notes and the timeline in the admin (notes and timeline read-only)."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from cases import selectors, services
from cases.models import (
    CaseLink,
    CaseMessage,
    CaseNote,
    Tag,
    TimelineEvent,
)
from crm.admin import (
    ScopedAdminMixin,
    adopt,
    is_admin,
)

# --- tags, links, notes, timeline ---------------------------------------------------------------


@admin.register(Tag)
class TagAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Tags are plain labels (no service); cases get them through `case_set_tags`."""

    list_display = ["name", "case_count"]
    ordering = ["name"]
    search_fields = ["name"]

    def visible(self, request: HttpRequest) -> QuerySet[Tag]:
        return Tag.objects.annotate(case_count=Count("cases"))

    @admin.display(description="Cases", ordering="case_count")
    def case_count(self, tag: Tag) -> int:
        return tag.case_count


class CaseLinkForm(forms.ModelForm):
    class Meta:
        model = CaseLink
        fields = ["from_case", "kind", "to_case"]

    def clean(self) -> dict:
        data = super().clean()
        source, other = data.get("from_case"), data.get("to_case")
        if source is not None and other is not None and source.pk == other.pk:
            # The message case_link gives.
            self.add_error("to_case", "A case cannot be linked to itself.")
        return data


@admin.register(CaseLink)
class CaseLinkAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Links are made by `case_link` and removed by `case_unlink`; a link is never edited."""

    form = CaseLinkForm
    list_display = ["from_case", "kind", "to_case", "created_by", "created_at"]
    list_filter = ["kind"]
    search_fields = ["from_case__number", "to_case__number"]
    autocomplete_fields = ["from_case", "to_case"]
    list_select_related = ["from_case", "to_case", "created_by"]

    def visible(self, request: HttpRequest) -> QuerySet[CaseLink]:
        cases = selectors.case_list(user=request.user)
        return CaseLink.objects.filter(models.Q(from_case__in=cases) | models.Q(to_case__in=cases))

    def manageable(self, request: HttpRequest) -> QuerySet[CaseLink]:
        return CaseLink.objects.filter(from_case__in=selectors.case_manageable(user=request.user))

    def get_fields(self, request: HttpRequest, obj: CaseLink | None = None) -> list[str]:
        base = ["from_case", "kind", "to_case"]
        return base if obj is None else [*base, "created_by", "created_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: CaseLink | None = None) -> list[str]:
        return [] if obj is None else ["from_case", "kind", "to_case", "created_by", "created_at"]

    def has_change_permission(self, request: HttpRequest, obj: CaseLink | None = None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: object
    ) -> forms.Field:
        if db_field.name == "from_case":
            kwargs["queryset"] = selectors.case_manageable(user=request.user)
        elif db_field.name == "to_case":
            kwargs["queryset"] = selectors.case_list(user=request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: CaseLink, form: forms.ModelForm, change: bool
    ) -> None:
        link = services.case_link(
            actor=request.user, case=obj.from_case, other=obj.to_case, kind=obj.kind
        )
        adopt(obj, link)

    def delete_model(self, request: HttpRequest, obj: CaseLink) -> None:
        services.case_unlink(actor=request.user, case=obj.from_case, other=obj.to_case)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[CaseLink]) -> None:
        self.delete_each(
            request,
            queryset.select_related("from_case", "to_case"),
            lambda link: services.case_unlink(
                actor=request.user, case=link.from_case, other=link.to_case
            ),
        )


class ReadOnlyAdminMixin:
    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


@admin.register(CaseNote)
class CaseNoteAdmin(ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """Notes are added on their case's page (through `case_add_note`) and never edited."""

    list_display = ["created_at", "case", "author", "excerpt"]
    search_fields = ["case__number", "body"]
    list_select_related = ["case", "author"]
    date_hierarchy = "created_at"
    fields = ["case", "author", "body", "created_at"]

    def visible(self, request: HttpRequest) -> QuerySet[CaseNote]:
        return selectors.note_list(user=request.user)

    @admin.display(description="Note")
    def excerpt(self, note: CaseNote) -> str:
        return note.body if len(note.body) <= 80 else f"{note.body[:79]}…"


@admin.register(TimelineEvent)
class TimelineEventAdmin(ReadOnlyAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    """The history the services wrote; read-only everywhere."""

    list_display = ["created_at", "case", "kind", "summary", "actor"]
    list_filter = ["kind"]
    search_fields = ["case__number", "summary"]
    list_select_related = ["case", "actor"]
    date_hierarchy = "created_at"
    fields = ["case", "kind", "summary", "actor", "data", "created_at"]

    def visible(self, request: HttpRequest) -> QuerySet[TimelineEvent]:
        return TimelineEvent.objects.filter(case__in=selectors.case_list(user=request.user))


# --- email intake -------------------------------------------------------------------------------


@admin.register(CaseMessage)
class CaseMessageAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """What intake decided for each message: read-only, the place to see why a message opened
    no case (auto-reply, bounce, flood) or which case it joined."""

    list_display = ["created_at", "sender", "subject", "outcome", "case", "direction", "reason"]
    list_filter = ["outcome", "direction"]
    search_fields = ["sender", "message__subject", "case__number"]
    list_select_related = ["message", "case"]
    readonly_fields = ["message", "case", "direction", "outcome", "sender", "reason", "created_at"]
    show_full_result_count = False

    def visible(self, request: HttpRequest) -> QuerySet[CaseMessage]:
        if is_admin(request):
            return CaseMessage.objects.all()
        return CaseMessage.objects.filter(case__in=selectors.case_list(user=request.user))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CaseMessage | None = None) -> bool:
        return False

    @admin.display(description="Subject")
    def subject(self, link: CaseMessage) -> str:
        return link.message.subject or "(no subject)"
