"""The back office for cases, tasks, customers and organizations.

Every admin starts from the permission-aware selectors (`cases.selectors`): admins see all,
leads see their teams' cases (`case_list`) and change those of the teams they lead
(`case_manageable`). Every change goes through `cases.services`, so the timeline records it;
a service's typed error is shown as is, as a form error where the form can foresee it (the form
calls the same validation functions) and as an error message where it cannot (a race).
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.widgets import AutocompleteSelect
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.http import HttpRequest, StreamingHttpResponse
from django.urls import reverse
from django.utils.html import format_html

from cases import selectors, services
from cases.choices import TASK_TRANSITIONS, CaseStatus, TaskStatus
from cases.errors import CaseError
from cases.models import (
    Case,
    CaseLink,
    CaseNote,
    ChecklistItem,
    Customer,
    CustomerEmail,
    CustomerPhone,
    Organization,
    OrganizationDomain,
    Tag,
    Task,
    TimelineEvent,
)
from cases.services.cases import (
    RELATION_FIELDS,
    UPDATABLE_FIELDS,
    validate_assignee,
    validate_transition,
)
from cases.services.customers import UPDATABLE_FIELDS as CUSTOMER_FIELDS
from cases.services.customers import normalize_address, normalize_domain
from cases.services.tasks import UPDATABLE_FIELDS as TASK_FIELDS
from cases.services.tasks import validate_task_assignee
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
from crm.models import Team, TeamMembership, User

CSV_COLUMNS = [
    "number",
    "title",
    "status",
    "priority",
    "type",
    "team",
    "assignee",
    "customer",
    "created_at",
    "updated_at",
]


class ServiceErrorsFormMixin:
    """Turns a service's typed error into a form error on the field it names."""

    def validate_with(self, validate: Callable[..., None], **kwargs: object) -> None:
        """Run one of the services' validation functions; its error lands on its field."""
        try:
            validate(**kwargs)
        except CaseError as exc:
            self.add_error(exc.field if exc.field in self.fields else None, exc.message)


def parse_tags(value: str) -> list[str]:
    return [name.strip() for name in value.split(",") if name.strip()]


def refuse_if_own_ancestor(*, case: Case, parent: Case | None) -> None:
    """The cycle check of `case_set_parent`, so the form can show it before saving."""
    ancestor, seen = parent, set()
    while ancestor is not None and ancestor.pk not in seen:
        if ancestor.pk == case.pk:
            raise CaseError("A case cannot be its own ancestor.", field="parent")
        seen.add(ancestor.pk)
        ancestor = ancestor.parent


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


def case_csv_rows(cases: QuerySet[Case]) -> Iterator[str]:
    """CSV lines, produced while the response streams."""

    class Echo:
        def write(self, value: str) -> str:
            return value

    writer = csv.writer(Echo())
    yield writer.writerow(CSV_COLUMNS)
    for case in cases.iterator(chunk_size=500):
        yield writer.writerow(
            [
                safe_cell(value)
                for value in (
                    case.number,
                    case.title,
                    case.status,
                    case.priority,
                    case.type,
                    case.team.name,
                    case.assignee.email if case.assignee else "",
                    case.customer.name if case.customer else "",
                    case.created_at.isoformat(),
                    case.updated_at.isoformat(),
                )
            ]
        )


def safe_cell(value: str) -> str:
    """Spreadsheets run a cell that starts like a formula; customers write the titles."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


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
        target = self.visible(request).filter(number__iexact=number).first()
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
        cases = queryset.select_related("team", "assignee", "customer").order_by("pk")
        return StreamingHttpResponse(
            case_csv_rows(cases),
            content_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="cases.csv"'},
        )


# --- tasks --------------------------------------------------------------------------------------


class TaskAdminForm(ServiceErrorsFormMixin, forms.ModelForm):
    class Meta:
        model = Task
        fields = [
            "case",
            "subject",
            "description",
            "category",
            "status",
            "priority",
            "assignee",
            "due_at",
            "remind_at",
            "summary",
            "action_required",
        ]

    def clean(self) -> dict:
        data = super().clean()
        task, changed = self.instance, set(self.changed_data)
        adding = task.pk is None
        case = data.get("case") if "case" in self.fields else task.case
        if "assignee" in self.fields and (adding or "assignee" in changed):
            self.validate_with(validate_task_assignee, case=case, assignee=data.get("assignee"))
        status = data.get("status")
        if not adding and "status" in changed and status:
            old = task.status
            if status not in TASK_TRANSITIONS[old]:
                # The message task_change_status gives (tasks have no validate function).
                self.add_error(
                    "status",
                    f"A {TaskStatus(old).label.lower()} task cannot become "
                    f"{TaskStatus(status).label.lower()}.",
                )
        return data


class ChecklistFormSet(ServiceInlineFormSet):
    """The whole checklist is written at once by `task_set_checklist`."""

    def save_through_services(self, actor: User) -> None:
        touched = any(form.has_changed() for form in self.forms)
        if not touched and not self.deleted_forms:
            return
        rows = sorted(
            self.kept_forms(), key=lambda f: (f.cleaned_data.get("position") or 0, f.prefix)
        )
        created = services.task_set_checklist(
            actor=actor,
            task=self.instance,
            items=[(f.cleaned_data["text"], f.cleaned_data.get("done", False)) for f in rows],
        )
        self.new_objects.extend(created)


class ChecklistInline(admin.TabularInline):
    model = ChecklistItem
    formset = ChecklistFormSet
    fields = ["position", "text", "done"]
    extra = 1


@admin.register(Task)
class TaskAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = TaskAdminForm
    list_display = [
        "subject",
        "case_number",
        "status",
        "priority",
        "assignee",
        "due_at",
        "updated_at",
    ]
    list_filter = [
        "status",
        "priority",
        ("assignee", admin.RelatedOnlyFieldListFilter),
        ("case__team", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["subject", "case__number", "category"]
    autocomplete_fields = ["case", "assignee"]
    date_hierarchy = "created_at"
    list_select_related = ["case", "assignee"]
    inlines = [ChecklistInline]
    fieldsets = [
        (None, {"fields": ["case", "subject", "description", "category"]}),
        ("Handling", {"fields": ["status", "priority", "assignee", "due_at", "remind_at"]}),
        ("Outcome", {"fields": ["summary", "action_required", "completed_at"]}),
        (
            "History",
            {
                "classes": ["collapse"],
                "fields": ["created_by", "created_at", "updated_at", "change_seq"],
            },
        ),
    ]

    def visible(self, request: HttpRequest) -> QuerySet[Task]:
        return selectors.task_list(user=request.user)

    def manageable(self, request: HttpRequest) -> QuerySet[Task]:
        return selectors.task_manageable(user=request.user)

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> list[str]:
        readonly = ["completed_at", "created_by", "created_at", "updated_at", "change_seq"]
        # No service moves a task to another case.
        return [*readonly, "case"] if obj is not None else readonly

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: object
    ) -> forms.Field:
        if db_field.name == "case":
            if is_admin(request):
                kwargs["queryset"] = Case.objects.all()
            else:
                # A lead's tasks belong to cases of the teams they lead.
                kwargs["queryset"] = selectors.case_manageable(user=request.user)
                kwargs["required"] = True
        elif db_field.name == "assignee" and not is_admin(request):
            kwargs["queryset"] = members_of(led_team_ids(request)).filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="Case", ordering="case__number")
    def case_number(self, task: Task) -> str:
        return task.case.number if task.case else "—"

    def save_model(
        self, request: HttpRequest, obj: Task, form: TaskAdminForm, change: bool
    ) -> None:
        actor, data, changed = request.user, form.cleaned_data, set(form.changed_data)
        with transaction.atomic():
            if not change:
                task = services.task_create(
                    actor=actor,
                    case=data.get("case"),
                    **{f: data[f] for f in (*TASK_FIELDS, "assignee") if f in data},
                )
                if data.get("status") and data["status"] != task.status:
                    services.task_change_status(actor=actor, task=task, status=data["status"])
                adopt(obj, task)
                return
            task = Task.objects.select_related("case").get(pk=obj.pk)
            plain = {f: data[f] for f in TASK_FIELDS if f in changed}
            if plain:
                services.task_update(actor=actor, task=task, **plain)
            if "assignee" in changed:
                services.task_assign(actor=actor, task=task, assignee=data.get("assignee"))
            if "status" in changed:
                services.task_change_status(actor=actor, task=task, status=data["status"])
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: Task) -> None:
        services.task_delete(actor=request.user, task=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> None:
        self.delete_each(
            request, queryset, lambda task: services.task_delete(actor=request.user, task=task)
        )


# --- customers and organizations ----------------------------------------------------------------


class CustomerEmailForm(forms.ModelForm):
    class Meta:
        model = CustomerEmail
        fields = ["email", "is_primary"]

    def clean_email(self) -> str:
        try:
            address = normalize_address(self.cleaned_data["email"])
        except CaseError as exc:
            raise forms.ValidationError(exc.message) from exc
        owner = (
            CustomerEmail.objects.filter(email__iexact=address)
            .exclude(customer_id=self.instance.customer_id)
            .select_related("customer")
            .first()
        )
        if owner is not None:
            raise forms.ValidationError(f"{address} already belongs to {owner.customer}.")
        return address


class CustomerEmailFormSet(ServiceInlineFormSet):
    """Addresses through `customer_add_email` / `customer_remove_email` (new change number)."""

    def save_through_services(self, actor: User) -> None:
        customer = self.instance
        for form in self.deleted_forms:
            if form.instance.pk:
                services.customer_remove_email(customer=customer, email=form.initial["email"])
                self.deleted_objects.append(form.instance)
        for form in sorted(self.kept_forms(), key=lambda f: f.cleaned_data.get("is_primary")):
            if not form.has_changed():
                continue
            if form.instance.pk and "email" in form.changed_data:
                services.customer_remove_email(customer=customer, email=form.initial["email"])
            row = services.customer_add_email(
                customer=customer,
                email=form.cleaned_data["email"],
                primary=form.cleaned_data.get("is_primary", False),
            )
            if form.instance.pk:
                self.changed_objects.append((row, form.changed_data))
            else:
                self.new_objects.append(row)


class CustomerPhoneFormSet(ServiceInlineFormSet):
    def save_through_services(self, actor: User) -> None:
        self.save()
        if self.new_objects or self.changed_objects or self.deleted_objects:
            services.customer_touch(customer=self.instance)


class CustomerEmailInline(admin.TabularInline):
    model = CustomerEmail
    form = CustomerEmailForm
    formset = CustomerEmailFormSet
    extra = 1


class CustomerPhoneInline(admin.TabularInline):
    model = CustomerPhone
    formset = CustomerPhoneFormSet
    fields = ["number", "kind"]
    extra = 1


@admin.register(Customer)
class CustomerAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "primary_email", "organization", "is_vip", "case_count", "updated_at"]
    ordering = ["name", "pk"]
    list_filter = ["is_vip", "organization__tier"]
    search_fields = ["name", "emails__email", "organization__name"]
    autocomplete_fields = ["organization"]
    list_select_related = ["organization"]
    fields = ["name", "organization", "is_vip", "notes", "change_seq", "created_at", "updated_at"]
    readonly_fields = ["change_seq", "created_at", "updated_at"]
    inlines = [CustomerEmailInline, CustomerPhoneInline]

    def visible(self, request: HttpRequest) -> QuerySet[Customer]:
        return (
            selectors.customer_list(user=request.user)
            .annotate(case_count=Count("cases"))
            .prefetch_related("emails")
        )

    @admin.display(description="Email")
    def primary_email(self, customer: Customer) -> str:
        emails = list(customer.emails.all())
        return emails[0].email if emails else "—"

    @admin.display(description="Cases", ordering="case_count")
    def case_count(self, customer: Customer) -> int:
        return customer.case_count

    def save_model(
        self, request: HttpRequest, obj: Customer, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            fresh = Customer.objects.get(pk=obj.pk)
            changed = {f: form.cleaned_data[f] for f in CUSTOMER_FIELDS if f in form.changed_data}
            services.customer_update(customer=fresh, **changed)
            obj.refresh_from_db()
        # A new customer is created in save_related, together with its addresses and phones.

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        if change:
            super().save_related(request, form, formsets, change)
            return
        by_model = {formset.model: formset for formset in formsets}
        email_rows = by_model[CustomerEmail].kept_forms() if CustomerEmail in by_model else []
        phone_rows = by_model[CustomerPhone].kept_forms() if CustomerPhone in by_model else []
        email_rows.sort(key=lambda f: not f.cleaned_data.get("is_primary"))
        data = form.cleaned_data
        customer = services.customer_create(
            name=data["name"],
            emails=[f.cleaned_data["email"] for f in email_rows],
            phones=[(f.cleaned_data["number"], f.cleaned_data["kind"]) for f in phone_rows],
            organization=data.get("organization"),
            is_vip=data.get("is_vip", False),
            notes=data.get("notes", ""),
        )
        adopt(form.instance, customer)
        for model, formset in by_model.items():
            formset.new_objects = list(model.objects.filter(customer=customer))
            formset.changed_objects, formset.deleted_objects = [], []

    def delete_model(self, request: HttpRequest, obj: Customer) -> None:
        services.customer_delete(customer=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        self.delete_each(request, queryset, lambda c: services.customer_delete(customer=c))


class OrganizationDomainForm(forms.ModelForm):
    class Meta:
        model = OrganizationDomain
        fields = ["domain"]

    def clean_domain(self) -> str:
        try:
            return normalize_domain(self.cleaned_data["domain"])
        except CaseError as exc:
            raise forms.ValidationError(exc.message) from exc


class OrganizationDomainFormSet(ServiceInlineFormSet):
    """The domains are written at once by `organization_set_domains`."""

    def save_through_services(self, actor: User) -> None:
        if not any(form.has_changed() for form in self.forms) and not self.deleted_forms:
            return
        before = set(self.instance.domains.values_list("domain", flat=True))
        wanted = services.organization_set_domains(
            organization=self.instance,
            domains=[f.cleaned_data["domain"] for f in self.kept_forms()],
        )
        rows = {row.domain: row for row in self.instance.domains.all()}
        self.new_objects.extend(rows[d] for d in wanted if d not in before)
        self.deleted_objects.extend(OrganizationDomain(domain=d) for d in before - set(wanted))


class OrganizationDomainInline(admin.TabularInline):
    model = OrganizationDomain
    form = OrganizationDomainForm
    formset = OrganizationDomainFormSet
    extra = 1


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "tier", "notes"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Organization.objects.filter(name__iexact=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"An organization named {name} exists already.")
        return name


@admin.register(Organization)
class OrganizationAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["name", "tier", "domain_list", "customer_count", "created_at"]
    ordering = ["name"]
    list_filter = ["tier"]
    search_fields = ["name", "domains__domain"]
    fields = ["name", "tier", "notes", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [OrganizationDomainInline]

    def visible(self, request: HttpRequest) -> QuerySet[Organization]:
        return (
            selectors.organization_list(user=request.user)
            .annotate(customer_count=Count("customers"))
            .prefetch_related("domains")
        )

    @admin.display(description="Domains")
    def domain_list(self, organization: Organization) -> str:
        return ", ".join(d.domain for d in organization.domains.all())

    @admin.display(description="Customers", ordering="customer_count")
    def customer_count(self, organization: Organization) -> int:
        return organization.customer_count

    def save_model(
        self, request: HttpRequest, obj: Organization, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            # There is no organization_update service: name, tier and notes are plain data.
            super().save_model(request, obj, form, change)
        # A new organization is created in save_related, together with its domains.

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        if change:
            super().save_related(request, form, formsets, change)
            return
        domains = [
            f.cleaned_data["domain"]
            for formset in formsets
            if formset.model is OrganizationDomain
            for f in formset.kept_forms()
        ]
        data = form.cleaned_data
        organization = services.organization_create(
            name=data["name"], domains=domains, tier=data["tier"], notes=data.get("notes", "")
        )
        adopt(form.instance, organization)
        for formset in formsets:
            formset.new_objects = list(organization.domains.all())
            formset.changed_objects, formset.deleted_objects = [], []


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
