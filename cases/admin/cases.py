"""The case admin: form, inlines, bulk actions, CSV export."""

from __future__ import annotations

from collections.abc import Callable

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from cases import selectors, services
from cases.admin.common import (
    ServiceErrorsFormMixin,
    parse_tags,
    refuse_if_own_ancestor,
)
from cases.choices import CaseStatus
from cases.errors import CaseError
from cases.exports import case_csv_lines, case_export_queryset
from cases.models import (
    Case,
    CaseNote,
    Task,
    TimelineEvent,
)
from cases.services.cases import (
    RELATION_FIELDS,
    UPDATABLE_FIELDS,
    validate_assignee,
    validate_transition,
)
from crm.admin import (
    ReadOnlyInlineMixin,
    ScopedAdminMixin,
    ServiceInlineFormSet,
    adopt,
    autocomplete_source,
    is_admin,
    led_team_ids,
    members_of,
)
from crm.exports import streaming_csv
from crm.models import Team, TeamMembership, User

# --- cases --------------------------------------------------------------------------------------


class CaseAdminForm(ServiceErrorsFormMixin, forms.ModelForm):
    tag_names = forms.CharField(
        label="Tags", required=False, help_text="Separated by commas; new tags are created."
    )

    class Meta:
        model = Case
        fields = [
            "title",
            "description",
            "type",
            "status",
            "priority",
            "sentiment",
            "channel",
            "team",
            "assignee",
            "watchers",
            "customer",
            "organization",
            "parent",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.initial.setdefault(
                "tag_names", ", ".join(self.instance.tags.values_list("name", flat=True))
            )

    def clean(self) -> dict:
        data = super().clean()
        case, changed = self.instance, set(self.changed_data)
        adding = case.pk is None
        if ("team" in self.fields and data.get("team") is not None) and (
            adding or changed & {"team", "assignee"}
        ):
            self.validate_with(validate_assignee, team=data["team"], assignee=data.get("assignee"))
        if "status" in changed and data.get("status"):
            probe = Case(status=CaseStatus.NEW) if adding else case
            self.validate_with(validate_transition, case=probe, status=data["status"])
        if "parent" in changed and not adding:
            self.validate_with(refuse_if_own_ancestor, case=case, parent=data.get("parent"))
        return data


class CaseActionForm(helpers.ActionForm):
    """The bulk actions' choices, next to the action menu (no intermediate pages)."""

    assignee = forms.ModelChoiceField(
        queryset=User.objects.filter(is_active=True),
        required=False,
        label="Agent",
        widget=AutocompleteSelect(Case._meta.get_field("assignee"), admin.site),
    )
    team = forms.ModelChoiceField(
        queryset=Team.objects.all(),
        required=False,
        label="Team",
        widget=AutocompleteSelect(Case._meta.get_field("team"), admin.site),
    )
    status = forms.ChoiceField(
        choices=[("", "---------"), *CaseStatus.choices], required=False, label="Status"
    )
    target = forms.CharField(
        required=False,
        label="Merge into",
        widget=forms.TextInput(attrs={"placeholder": "case number", "size": 14}),
    )


class NewNoteFormSet(ServiceInlineFormSet):
    def save_through_services(self, actor: User) -> None:
        for form in self.kept_forms():
            note = services.case_add_note(
                actor=actor, case=self.instance, body=form.cleaned_data["body"]
            )
            self.new_objects.append(note)


class TaskInline(ReadOnlyInlineMixin, admin.TabularInline):
    """A case's tasks; each opens in the task admin, where it is changed."""

    model = Task
    fields = ["subject", "status", "priority", "assignee", "due_at"]
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Task]:
        return super().get_queryset(request).select_related("assignee")


class CaseNoteInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = CaseNote
    fields = ["created_at", "author", "body"]
    readonly_fields = fields
    verbose_name_plural = "internal notes"

    def get_queryset(self, request: HttpRequest) -> QuerySet[CaseNote]:
        return super().get_queryset(request).select_related("author")


class NewCaseNoteInline(admin.StackedInline):
    """One blank note; saving the case adds it through `case_add_note` (mentions, timeline)."""

    model = CaseNote
    formset = NewNoteFormSet
    fields = ["body"]
    extra = 1
    can_delete = False
    verbose_name = "new internal note"
    verbose_name_plural = "add an internal note"
    formfield_overrides = {models.TextField: {"widget": forms.Textarea(attrs={"rows": 3})}}

    def get_queryset(self, request: HttpRequest) -> QuerySet[CaseNote]:
        return super().get_queryset(request).none()

    def has_add_permission(self, request: HttpRequest, obj: Case | None = None) -> bool:
        if not super().has_add_permission(request, obj):
            return False
        return (
            obj is None or selectors.case_manageable(user=request.user).filter(pk=obj.pk).exists()
        )

    def has_view_permission(self, request: HttpRequest, obj: Case | None = None) -> bool:
        return self.has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Case | None = None) -> bool:
        return False


class TimelineInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The case's history as the services wrote it; nobody edits it."""

    model = TimelineEvent
    fields = ["created_at", "kind", "summary", "actor"]
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[TimelineEvent]:
        return super().get_queryset(request).select_related("actor")


@admin.register(Case)
class CaseAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = CaseAdminForm
    action_form = CaseActionForm
    list_display = [
        "number",
        "title",
        "status",
        "priority",
        "team",
        "assignee",
        "customer",
        "updated_at",
    ]
    list_display_links = ["number", "title"]
    list_filter = [
        "status",
        "priority",
        "type",
        "channel",
        ("team", admin.RelatedOnlyFieldListFilter),
        ("assignee", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["number", "title", "customer__name", "customer__emails__email"]
    autocomplete_fields = ["team", "assignee", "customer", "organization", "parent", "watchers"]
    date_hierarchy = "created_at"
    list_select_related = ["team", "assignee", "customer"]
    readonly_fields = [
        "number",
        "merged_into",
        "task_link",
        "first_response_at",
        "resolved_at",
        "closed_at",
        "created_by",
        "created_at",
        "updated_by",
        "updated_at",
    ]
    inlines = [TaskInline, CaseNoteInline, NewCaseNoteInline, TimelineInline]
    actions = ["assign_selected", "change_status_selected", "merge_selected", "export_csv"]

    def visible(self, request: HttpRequest) -> QuerySet[Case]:
        return selectors.case_list(user=request.user)

    def manageable(self, request: HttpRequest) -> QuerySet[Case]:
        return selectors.case_manageable(user=request.user)

    def get_fieldsets(self, request: HttpRequest, obj: Case | None = None) -> list:
        handling = ["status", "priority", "type", "channel", "sentiment"]
        people = ["team", "assignee", "watchers"]
        if obj is None:
            return [
                (None, {"fields": ["title", "description"]}),
                ("Handling", {"fields": handling + people}),
                ("Customer", {"fields": ["customer", "organization"]}),
                ("Relations", {"fields": ["tag_names", "parent"]}),
            ]
        return [
            (None, {"fields": ["number", "title", "description"]}),
            ("Handling", {"fields": handling + people}),
            ("Customer", {"fields": ["customer", "organization"]}),
            ("Relations", {"fields": ["tag_names", "parent", "merged_into", "task_link"]}),
            (
                "History",
                {
                    "classes": ["collapse"],
                    "fields": [
                        "created_by",
                        "created_at",
                        "updated_by",
                        "updated_at",
                        "first_response_at",
                        "resolved_at",
                        "closed_at",
                    ],
                },
            ),
        ]

    def get_inlines(self, request: HttpRequest, obj: Case | None) -> list:
        return [NewCaseNoteInline] if obj is None else super().get_inlines(request, obj)

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: object
    ) -> forms.Field:
        if db_field.name == "parent":
            kwargs["queryset"] = selectors.case_list(user=request.user)
        elif not is_admin(request):
            if db_field.name == "team":
                kwargs["queryset"] = Team.objects.filter(pk__in=led_team_ids(request))
            elif db_field.name == "assignee":
                kwargs["queryset"] = members_of(led_team_ids(request)).filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Case], search_term: str
    ) -> tuple[QuerySet[Case], bool]:
        """Where the chosen case will be changed (a task's case, a link's source), the
        autocomplete offers only cases the user may change."""
        if autocomplete_source(request) in {
            ("cases", "task", "case"),
            ("cases", "caselink", "from_case"),
        }:
            queryset = queryset.filter(pk__in=self.manageable(request).values("pk"))
        return super().get_search_results(request, queryset, search_term)

    def formfield_for_manytomany(
        self, db_field: models.ManyToManyField, request: HttpRequest, **kwargs: object
    ) -> forms.Field:
        if db_field.name == "watchers" and not is_admin(request):
            # Any agent may watch; the autocomplete offers a lead their own teams' members.
            kwargs["queryset"] = User.objects.filter(
                pk__in=TeamMembership.objects.values("user_id")
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="Tasks")
    def task_link(self, case: Case) -> str:
        url = reverse("admin:cases_task_add")
        return format_html('<a href="{}?case={}">Add a task to this case</a>', url, case.pk)

    # Saving: every change through a service, in one savepoint.

    def save_model(
        self, request: HttpRequest, obj: Case, form: CaseAdminForm, change: bool
    ) -> None:
        with transaction.atomic():
            if change:
                case = Case.objects.select_related("team").get(pk=obj.pk)
                self._save_changes(request.user, case, form)
            else:
                case = self._create(request.user, form.cleaned_data)
        if change:
            obj.refresh_from_db()
        else:
            adopt(obj, case)

    def _create(self, actor: User, data: dict) -> Case:
        case = services.case_create(
            actor=actor,
            title=data["title"],
            team=data["team"],
            description=data.get("description", ""),
            type=data.get("type", "question"),
            priority=data.get("priority", "normal"),
            sentiment=data.get("sentiment", "unknown"),
            channel=data.get("channel", "email"),
            customer=data.get("customer"),
            organization=data.get("organization"),
            assignee=data.get("assignee"),
            tags=parse_tags(data.get("tag_names", "")),
            parent=data.get("parent"),
        )
        if data.get("status") and data["status"] != case.status:
            services.case_change_status(actor=actor, case=case, status=data["status"])
        for watcher in sorted(data.get("watchers") or (), key=lambda user: user.pk):
            services.case_add_watcher(actor=actor, case=case, watcher=watcher)
        return case

    def _save_changes(self, actor: User, case: Case, form: CaseAdminForm) -> None:
        data, changed = form.cleaned_data, set(form.changed_data)
        plain = {f: data[f] for f in (*UPDATABLE_FIELDS, *RELATION_FIELDS) if f in changed}
        if plain:
            services.case_update(actor=actor, case=case, **plain)
        if "tag_names" in changed:
            services.case_set_tags(actor=actor, case=case, names=parse_tags(data["tag_names"]))
        if "parent" in changed:
            services.case_set_parent(actor=actor, case=case, parent=data.get("parent"))
        if changed & {"team", "assignee"}:
            services.case_assign(
                actor=actor,
                case=case,
                assignee=data.get("assignee") if "assignee" in data else case.assignee,
                team=data.get("team"),
            )
        if "status" in changed:
            services.case_change_status(actor=actor, case=case, status=data["status"])
        if "watchers" in changed:
            before, after = set(case.watchers.all()), set(data["watchers"])
            for watcher in sorted(after - before, key=lambda user: user.pk):
                services.case_add_watcher(actor=actor, case=case, watcher=watcher)
            for watcher in sorted(before - after, key=lambda user: user.pk):
                services.case_remove_watcher(actor=actor, case=case, watcher=watcher)

    def save_related(
        self, request: HttpRequest, form: CaseAdminForm, formsets: list, change: bool
    ) -> None:
        # Tags, watchers and parent went through their services in save_model; only inlines
        # are left (form.save_m2m would bypass the timeline).
        for formset in formsets:
            self.save_formset(request, form, formset, change)

    def get_deleted_objects(self, objs, request: HttpRequest) -> tuple:
        """A case's notes and timeline go with it (`case_delete`), though nobody may delete
        them on their own; Django would otherwise ask for that permission and refuse."""
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        perms_needed -= {CaseNote._meta.verbose_name, TimelineEvent._meta.verbose_name}
        return deleted, counts, perms_needed, protected

    def delete_model(self, request: HttpRequest, obj: Case) -> None:
        services.case_delete(actor=request.user, case=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        self.delete_each(
            request, queryset, lambda case: services.case_delete(actor=request.user, case=case)
        )

    # Bulk actions: each case through the service in its own savepoint, errors per case.

    def _action_data(self, request: HttpRequest) -> dict:
        form = self.action_form(request.POST, auto_id=None)
        form.fields["action"].choices = self.get_action_choices(request)
        form.is_valid()
        return form.cleaned_data

    def _each(
        self,
        request: HttpRequest,
        queryset: QuerySet[Case],
        change: Callable[[Case], object],
        done: Callable[[str], str],
    ) -> None:
        """Apply `change` (a service call) to each case in its own savepoint. A refusal is
        reported for its case and the others still change; `done` words the success."""
        cases = list(queryset.select_related("team", "assignee").order_by("pk"))
        allowed = set(
            self.manageable(request)
            .filter(pk__in=[case.pk for case in cases])
            .values_list("pk", flat=True)
        )
        succeeded = []
        for case in cases:
            if case.pk not in allowed:
                self.message_user(
                    request, f"{case.number}: you may not change this case.", messages.ERROR
                )
                continue
            try:
                with transaction.atomic():
                    change(case)
            except CaseError as exc:
                self.message_user(request, f"{case.number}: {exc.message}", messages.ERROR)
            else:
                succeeded.append(case.number)
        if succeeded:
            self.message_user(request, done(", ".join(succeeded)), messages.SUCCESS)

    @admin.action(
        description="Assign selected cases (choose an agent and/or a team)", permissions=["change"]
    )
    def assign_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        data = self._action_data(request)
        assignee, team = data.get("assignee"), data.get("team")
        if assignee is None and team is None:
            self.message_user(
                request, "Choose an agent or a team to assign the cases to.", messages.ERROR
            )
            return

        def assign(case: Case) -> None:
            keep = assignee
            if keep is None and case.assignee is not None:
                still_member = TeamMembership.objects.filter(team=team, user=case.assignee)
                keep = case.assignee if still_member.exists() else None
            services.case_assign(actor=request.user, case=case, assignee=keep, team=team)

        whom = ", ".join(str(x) for x in (assignee, team) if x is not None)
        self._each(request, queryset, assign, lambda numbers: f"Assigned {numbers} to {whom}.")

    @admin.action(
        description="Change status of selected cases (choose a status)", permissions=["change"]
    )
    def change_status_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        status = self._action_data(request).get("status")
        if not status:
            self.message_user(request, "Choose the status to set.", messages.ERROR)
            return
        self._each(
            request,
            queryset,
            lambda case: services.case_change_status(actor=request.user, case=case, status=status),
            lambda numbers: f"{numbers}: status set to {CaseStatus(status).label.lower()}.",
        )

    @admin.action(
        description="Merge selected cases into a case (give its number)", permissions=["change"]
    )
    def merge_selected(self, request: HttpRequest, queryset: QuerySet[Case]) -> None:
        number = (self._action_data(request).get("target") or "").strip()
        if not number:
            self.message_user(request, "Give the number of the case to merge into.", messages.ERROR)
            return
        target = self.visible(request).filter(number=number.upper()).first()
        if target is None:
            self.message_user(request, f"There is no case {number}.", messages.ERROR)
            return
        if not self._in_scope(request, "change", target):
            self.message_user(request, f"You may not change {target.number}.", messages.ERROR)
            return
        self._each(
            request,
            queryset,
            lambda case: services.case_merge(
                actor=request.user, source=case, target=Case.objects.get(pk=target.pk)
            ),
            lambda numbers: f"Merged {numbers} into {target.number}.",
        )

    @admin.action(description="Export selected cases as CSV", permissions=["view"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Case]) -> StreamingHttpResponse:
        cases = case_export_queryset(queryset.order_by("pk"))
        return streaming_csv(request, case_csv_lines(cases), filename="cases.csv")
