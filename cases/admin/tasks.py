"""The task admin with its checklist."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from cases import selectors, services
from cases.admin.common import (
    ServiceErrorsFormMixin,
)
from cases.errors import InvalidTransition
from cases.models import (
    Case,
    ChecklistItem,
    Task,
)
from cases.services.tasks import UPDATABLE_FIELDS as TASK_FIELDS
from cases.services.tasks import validate_task_assignee, validate_task_transition
from crm.admin import (
    ScopedAdminMixin,
    ServiceInlineFormSet,
    adopt,
    is_admin,
    led_team_ids,
    members_of,
)
from crm.models import User

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
            try:
                validate_task_transition(task=task, status=status)
            except InvalidTransition as exc:
                self.add_error("status", exc.message)
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
