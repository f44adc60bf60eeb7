"""The back office for the kernel: agents (users and their profiles), teams, memberships, API keys.

Admins (superusers, or role admin) see and change everything. Leads (the "Leads" group, made
staff by `crm.services.agent_upsert`) see the teams they lead, those teams' memberships and the
profiles of their members, where they pause agents and set availability and capacity; they
cannot change users themselves, so they cannot make anyone staff or superuser. Plain agents are
not staff and never enter the admin.

The scoping and service habits every back-office admin shares (the cases app uses them too) live
here in `ScopedAdminMixin` and `ServiceInlineFormSet`.
"""

from __future__ import annotations

from collections.abc import Iterable

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Prefetch, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.utils.html import format_html

from crm import alerts, selectors, services
from crm.choices import Role
from crm.errors import ServiceError
from crm.graph import subscriptions
from crm.models import (
    AgentProfile,
    ApiToken,
    GraphAppSecret,
    GraphSubscription,
    Heartbeat,
    Team,
    TeamMembership,
    User,
    normalize_email,
)


def is_admin(request: HttpRequest) -> bool:
    return selectors.user_is_admin(request.user)


def led_team_ids(request: HttpRequest) -> set[int]:
    return selectors.user_led_team_ids(request.user)


def members_of(team_ids: Iterable[int]) -> QuerySet[User]:
    """Users who belong to any of `team_ids` (a subquery, so no duplicates and no DISTINCT)."""
    member_ids = TeamMembership.objects.filter(team_id__in=list(team_ids)).values("user_id")
    return User.objects.filter(pk__in=member_ids)


def service_message(exc: Exception) -> str:
    if isinstance(exc, ServiceError):
        return exc.message
    if isinstance(exc, ValidationError):
        return " ".join(exc.messages)
    return str(exc)


def adopt(instance: models.Model, saved: models.Model) -> None:
    """Make the admin's unsaved `instance` stand for the row a service created as `saved`."""
    for field in saved._meta.concrete_fields:
        setattr(instance, field.attname, getattr(saved, field.attname))
    instance._state.adding = False
    instance._state.db = saved._state.db


class ServiceInlineFormSet(BaseInlineFormSet):
    """An inline whose rows are written by services instead of `save()`.

    Subclasses implement `save_through_services(actor)` and fill `new_objects`,
    `changed_objects` and `deleted_objects` as `save()` would (the admin's history reads them).
    """

    def save_through_services(self, actor: User) -> None:
        raise NotImplementedError

    def kept_forms(self) -> list[forms.ModelForm]:
        """Rows that stay after this submit: not deleted and not an untouched blank extra."""
        deleted = set(self.deleted_forms) if self.can_delete else set()
        return [
            form
            for form in self.forms
            if form not in deleted
            and form.cleaned_data
            and (form.instance.pk or form.has_changed())
        ]


class ReadOnlyInlineMixin:
    """An inline that only shows rows (history, rows changed elsewhere)."""

    can_delete = False
    extra = 0

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return False


class ScopedAdminMixin:
    """What every back-office ModelAdmin does the same way.

    - `visible(request)` is the queryset the user may see (start it from the app's
      permission-aware selector), `manageable(request)` what they may change; the model
      permissions of the user's groups still apply on top.
    - An object outside the visible scope answers 404, exactly like one that does not exist.
    - Inline formsets built on `ServiceInlineFormSet` are written by services.
    - A service that refuses a change the form's validation did not foresee (a race) rolls the
      whole submit back and its message is shown as is, never a 500.
    """

    def visible(self, request: HttpRequest) -> QuerySet:
        return super().get_queryset(request)

    def manageable(self, request: HttpRequest) -> QuerySet:
        return self.visible(request)

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        queryset = self.visible(request)
        ordering = self.get_ordering(request)
        return queryset.order_by(*ordering) if ordering else queryset

    def _in_scope(self, request: HttpRequest, scope: str, obj: models.Model | None) -> bool:
        if obj is None or obj.pk is None or is_admin(request):
            return True
        cache = request.__dict__.setdefault("_backoffice_scope", {})
        key = (obj._meta.label, scope, obj.pk)
        if key not in cache:
            queryset = self.visible(request) if scope == "view" else self.manageable(request)
            cache[key] = queryset.filter(pk=obj.pk).exists()
        return cache[key]

    def has_view_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return super().has_view_permission(request, obj) and self._in_scope(request, "view", obj)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return super().has_change_permission(request, obj) and self._in_scope(
            request, "change", obj
        )

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self._in_scope(
            request, "change", obj
        )

    def get_object(
        self, request: HttpRequest, object_id: str, from_field: str | None = None
    ) -> models.Model:
        obj = super().get_object(request, object_id, from_field)
        if obj is None:
            raise Http404(f"No {self.opts.verbose_name} with ID “{object_id}” that you may see.")
        return obj

    def save_formset(
        self, request: HttpRequest, form: forms.ModelForm, formset: BaseInlineFormSet, change: bool
    ) -> None:
        if isinstance(formset, ServiceInlineFormSet):
            formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
            formset.save_through_services(request.user)
        else:
            super().save_formset(request, form, formset, change)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict | None = None,
    ) -> HttpResponse:
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except (ServiceError, ValidationError) as exc:
            # Raised out of the admin's transaction, so nothing of this submit was kept.
            if request.method != "POST":
                raise
            self.message_user(request, service_message(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(
        self, request: HttpRequest, object_id: str, extra_context: dict | None = None
    ) -> HttpResponse:
        try:
            return super().delete_view(request, object_id, extra_context)
        except ServiceError as exc:
            if request.method != "POST":
                raise
            self.message_user(request, exc.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    def delete_each(self, request: HttpRequest, queryset: QuerySet, delete) -> None:
        """Bulk delete through a service, one savepoint per row; a refusal names its row."""
        for obj in list(queryset):
            try:
                with transaction.atomic():
                    delete(obj)
            except ServiceError as exc:
                self.message_user(request, f"{obj}: {exc.message}", messages.ERROR)


# --- agents -------------------------------------------------------------------------------------

LEAD_PROFILE_FIELDS = ("availability", "paused", "capacity")


def profile_save(profile: AgentProfile, changed: Iterable[str]) -> AgentProfile:
    """Write a profile form's changes.

    Role goes through `agent_upsert` (it decides staff, superuser and the Leads group) and
    pause through `agent_set_paused`; the kernel has no service for the plain fields.
    """
    changed = set(changed)
    direct = sorted(changed - {"role", "paused", "user"})
    if profile.pk is None:
        profile.save()
    elif direct:
        profile.save(update_fields=direct)
    if "paused" in changed:
        services.agent_set_paused(agent=profile.user, paused=profile.paused)
    if "role" in changed:
        services.agent_upsert(email=profile.user.email, role=profile.role)
    return profile


class AgentProfileFormSet(ServiceInlineFormSet):
    def save_through_services(self, actor: User) -> None:
        for form in self.forms:
            if form.has_changed():
                adding = form.instance.pk is None
                profile = profile_save(form.instance, form.changed_data)
                if adding:
                    self.new_objects.append(profile)
                else:
                    self.changed_objects.append((profile, form.changed_data))


class AgentProfileInline(admin.StackedInline):
    """The agent side of a user. Only admins edit it here; leads use "Agent profiles"."""

    model = AgentProfile
    formset = AgentProfileFormSet
    can_delete = False
    fields = ["role", "timezone", "signature", "availability", "paused", "capacity"]

    def has_add_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return is_admin(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: User | None = None) -> bool:
        return is_admin(request) and super().has_change_permission(request, obj)


class MembershipFormSet(ServiceInlineFormSet):
    """Memberships are written by `team_membership_set` / `team_membership_remove`."""

    def save_through_services(self, actor: User) -> None:
        for form in self.deleted_forms:
            if form.instance.pk:
                original = TeamMembership.objects.select_related("team", "user").get(
                    pk=form.instance.pk
                )
                services.team_membership_remove(team=original.team, user=original.user)
                self.deleted_objects.append(original)
        for form in self.kept_forms():
            if not form.has_changed():
                continue
            team, user = form.cleaned_data["team"], form.cleaned_data["user"]
            if form.instance.pk:
                original = TeamMembership.objects.select_related("team", "user").get(
                    pk=form.instance.pk
                )
                if (original.team_id, original.user_id) != (team.pk, user.pk):
                    services.team_membership_remove(team=original.team, user=original.user)
            membership = services.team_membership_set(
                team=team, user=user, is_lead=form.cleaned_data.get("is_lead", False)
            )
            if form.instance.pk:
                self.changed_objects.append((membership, form.changed_data))
            else:
                self.new_objects.append(membership)


class AdminOnlyInlineMixin:
    """Editable by admins; others see the rows (leads edit memberships on their own page)."""

    def has_add_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return is_admin(request) and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return is_admin(request) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: models.Model | None = None) -> bool:
        return is_admin(request) and super().has_delete_permission(request, obj)


class UserMembershipInline(AdminOnlyInlineMixin, admin.TabularInline):
    model = TeamMembership
    formset = MembershipFormSet
    fields = ["team", "is_lead", "joined_at"]
    readonly_fields = ["joined_at"]
    autocomplete_fields = ["team"]
    extra = 0
    verbose_name = "team"
    verbose_name_plural = "teams"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TeamMembership]:
        return super().get_queryset(request).select_related("team")


class AgentCreationForm(AdminUserCreationForm):
    """A new agent: created by `agent_upsert`, so the address is verified and the role's access
    (staff, superuser, the Leads group) is set exactly as everywhere else."""

    role = forms.ChoiceField(choices=Role.choices, initial=Role.AGENT)
    team = forms.ModelChoiceField(
        queryset=Team.objects.all(), required=False, help_text="Optional: a first team to join."
    )

    class Meta:
        model = User
        fields = ("email", "first_name", "last_name")

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError("A user with this email address exists already.")
        return email


@admin.register(User)
class UserAdmin(ScopedAdminMixin, DjangoUserAdmin):
    add_form = AgentCreationForm
    ordering = ["email"]
    list_display = [
        "email",
        "first_name",
        "last_name",
        "role",
        "team_list",
        "is_staff",
        "is_active",
        "last_login",
    ]
    list_filter = ["profile__role", "is_staff", "is_superuser", "is_active", "groups"]
    search_fields = ["email", "first_name", "last_name"]
    inlines = [AgentProfileInline, UserMembershipInline]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        (
            "Permissions",
            {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (
            None,
            {
                "classes": ("wide",),
                "fields": (
                    "email",
                    "first_name",
                    "last_name",
                    "role",
                    "team",
                    "usable_password",
                    "password1",
                    "password2",
                ),
            },
        ),
    )

    def visible(self, request: HttpRequest) -> QuerySet[User]:
        users = (
            User.objects.all()
            .select_related("profile")
            .prefetch_related(
                Prefetch("memberships", queryset=TeamMembership.objects.select_related("team"))
            )
        )
        if is_admin(request):
            return users
        return users.filter(pk__in=members_of(led_team_ids(request)).values("pk"))

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list:
        return [] if obj is None else super().get_inlines(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: User | None = None) -> list[str]:
        readonly = list(super().get_readonly_fields(request, obj))
        if not is_admin(request):
            readonly += ["is_staff", "is_superuser", "groups", "user_permissions"]
        return readonly

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[User], search_term: str
    ) -> tuple[QuerySet[User], bool]:
        """Autocomplete offers agents: for a case or task, members of a team (for a lead, of
        the teams they lead); for a new membership, any active user a lead may bring in."""
        source = autocomplete_source(request)
        if source in {("cases", "case", "assignee"), ("cases", "task", "assignee")}:
            queryset = queryset.filter(
                is_active=True, pk__in=TeamMembership.objects.values("user_id")
            )
        elif source == ("crm", "teammembership", "user") and not is_admin(request):
            queryset = User.objects.filter(is_active=True).order_by("email")
        return super().get_search_results(request, queryset, search_term)

    @admin.display(description="Role", ordering="profile__role")
    def role(self, user: User) -> str:
        try:
            return user.profile.get_role_display()
        except AgentProfile.DoesNotExist:
            return "—"

    @admin.display(description="Teams")
    def team_list(self, user: User) -> str:
        return ", ".join(
            f"{m.team.name}{' (lead)' if m.is_lead else ''}" for m in user.memberships.all()
        )

    def save_model(self, request: HttpRequest, obj: User, form: forms.Form, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        data = form.cleaned_data
        user, _ = services.agent_upsert(
            email=data["email"],
            password=data.get("password1") if data.get("set_usable_password", True) else None,
            team=data.get("team"),
            role=data["role"],
            first_name=data.get("first_name", ""),
            last_name=data.get("last_name", ""),
        )
        adopt(obj, user)


def autocomplete_source(request: HttpRequest) -> tuple[str, str, str] | None:
    """(app label, model, field) an admin autocomplete request searches for, else None."""
    match = getattr(request, "resolver_match", None)
    if match is None or match.url_name != "autocomplete":
        return None
    params = request.GET
    return (params.get("app_label", ""), params.get("model_name", ""), params.get("field_name", ""))


@admin.register(AgentProfile)
class AgentProfileAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Where leads pause agents and set availability and capacity for the teams they lead."""

    list_display = ["user", "role", "availability", "paused", "capacity", "timezone"]
    list_filter = ["role", "availability", "paused"]
    search_fields = ["user__email", "user__first_name", "user__last_name"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    fields = ["user", "role", "timezone", "signature", "availability", "paused", "capacity"]
    actions = ["pause", "resume"]

    def visible(self, request: HttpRequest) -> QuerySet[AgentProfile]:
        profiles = AgentProfile.objects.select_related("user")
        if is_admin(request):
            return profiles
        return profiles.filter(user__in=members_of(led_team_ids(request)))

    def get_readonly_fields(
        self, request: HttpRequest, obj: AgentProfile | None = None
    ) -> list[str]:
        if not is_admin(request):
            return [f for f in self.fields if f not in LEAD_PROFILE_FIELDS]
        return ["user"] if obj is not None else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return is_admin(request) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: AgentProfile | None = None) -> bool:
        # A profile goes with its user (admins delete users); leads never delete one.
        return is_admin(request) and super().has_delete_permission(request, obj)

    def save_model(
        self, request: HttpRequest, obj: AgentProfile, form: forms.Form, change: bool
    ) -> None:
        profile_save(obj, form.changed_data if change else [*form.changed_data, "role"])

    def _set_paused(self, request: HttpRequest, queryset: QuerySet, paused: bool) -> None:
        profiles = list(queryset.select_related("user"))
        for profile in profiles:
            services.agent_set_paused(agent=profile.user, paused=paused)
        verb = "Paused" if paused else "Resumed"
        self.message_user(request, f"{verb} {len(profiles)} agent(s).", messages.SUCCESS)

    @admin.action(
        description="Pause selected agents (round-robin skips them)", permissions=["change"]
    )
    def pause(self, request: HttpRequest, queryset: QuerySet[AgentProfile]) -> None:
        self._set_paused(request, self.manageable(request).filter(pk__in=queryset), True)

    @admin.action(description="Resume selected agents", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[AgentProfile]) -> None:
        self._set_paused(request, self.manageable(request).filter(pk__in=queryset), False)


# --- teams --------------------------------------------------------------------------------------


class TeamMembershipInline(AdminOnlyInlineMixin, admin.TabularInline):
    model = TeamMembership
    formset = MembershipFormSet
    fields = ["user", "is_lead", "last_assigned_at", "joined_at"]
    readonly_fields = ["last_assigned_at", "joined_at"]
    autocomplete_fields = ["user"]
    extra = 0
    verbose_name = "member"
    verbose_name_plural = "members"

    def get_queryset(self, request: HttpRequest) -> QuerySet[TeamMembership]:
        return super().get_queryset(request).select_related("user")


@admin.register(Team)
class TeamAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "email", "member_count", "reopen_window_days", "created_at"]
    ordering = ["name"]
    search_fields = ["name", "email"]
    fields = ["name", "email", "reopen_window_days"]
    inlines = [TeamMembershipInline]

    def visible(self, request: HttpRequest) -> QuerySet[Team]:
        teams = selectors.team_list(user=request.user).annotate(member_count=Count("memberships"))
        if is_admin(request):
            return teams
        return teams.filter(pk__in=led_team_ids(request))

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, team: Team) -> int:
        return team.member_count

    def save_model(self, request: HttpRequest, obj: Team, form: forms.Form, change: bool) -> None:
        if change:
            # The kernel has no team_update service: name, address and window are plain data.
            super().save_model(request, obj, form, change)
            return
        team = services.team_create(name=obj.name, email=obj.email)
        if team.reopen_window_days != obj.reopen_window_days:
            team.reopen_window_days = obj.reopen_window_days
            team.save(update_fields=["reopen_window_days"])
        adopt(obj, team)


@admin.register(TeamMembership)
class TeamMembershipAdmin(ScopedAdminMixin, admin.ModelAdmin):
    """Leads add and remove members of the teams they lead and choose co-leads here."""

    list_display = ["user", "team", "is_lead", "last_assigned_at", "joined_at"]
    list_filter = [("team", admin.RelatedOnlyFieldListFilter), "is_lead"]
    search_fields = ["user__email", "user__first_name", "user__last_name", "team__name"]
    list_select_related = ["user", "team"]
    autocomplete_fields = ["team", "user"]
    fields = ["team", "user", "is_lead", "last_assigned_at", "joined_at"]

    def visible(self, request: HttpRequest) -> QuerySet[TeamMembership]:
        memberships = TeamMembership.objects.select_related("user", "team")
        if is_admin(request):
            return memberships
        return memberships.filter(team_id__in=led_team_ids(request))

    def get_readonly_fields(
        self, request: HttpRequest, obj: TeamMembership | None = None
    ) -> list[str]:
        readonly = ["last_assigned_at", "joined_at"]
        return readonly + ["team", "user"] if obj is not None else readonly

    def formfield_for_foreignkey(
        self, db_field: models.ForeignKey, request: HttpRequest, **kwargs: object
    ) -> forms.Field:
        if not is_admin(request):
            if db_field.name == "team":
                kwargs["queryset"] = Team.objects.filter(pk__in=led_team_ids(request))
            elif db_field.name == "user":
                kwargs["queryset"] = User.objects.filter(is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(
        self, request: HttpRequest, obj: TeamMembership, form: forms.Form, change: bool
    ) -> None:
        membership = services.team_membership_set(team=obj.team, user=obj.user, is_lead=obj.is_lead)
        adopt(obj, membership)

    def delete_model(self, request: HttpRequest, obj: TeamMembership) -> None:
        services.team_membership_remove(team=obj.team, user=obj.user)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[TeamMembership]) -> None:
        self.delete_each(
            request,
            queryset.select_related("team", "user"),
            lambda m: services.team_membership_remove(team=m.team, user=m.user),
        )


# --- system -------------------------------------------------------------------------------------


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Adding a token shows its key once; afterwards only the prefix is known."""

    list_display = [
        "name",
        "user",
        "prefix",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
    ]
    list_filter = ["revoked_at"]
    search_fields = ["name", "user__email", "prefix"]
    list_select_related = ["user"]
    autocomplete_fields = ["user"]
    actions = ["revoke"]

    def get_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return ["user", "name", "expires_at"]
        return ["user", "name", "prefix", "created_at", "last_used_at", "expires_at", "revoked_at"]

    def get_readonly_fields(self, request: HttpRequest, obj: ApiToken | None = None) -> list[str]:
        if obj is None:
            return []
        return ["user", "prefix", "created_at", "last_used_at", "revoked_at"]

    def save_model(self, request: HttpRequest, obj: ApiToken, form: object, change: bool) -> None:
        if change:
            super().save_model(request, obj, form, change)
            return
        token, key = services.api_token_create(
            user=obj.user, name=obj.name, expires_at=obj.expires_at
        )
        obj.pk = token.pk
        messages.warning(
            request, f"API key for “{token.name}”: {key}  (copy it now; it is not shown again)"
        )

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request: HttpRequest, queryset: object) -> None:
        for token in queryset:
            services.api_token_revoke(token=token)


@admin.register(Heartbeat)
class HeartbeatAdmin(admin.ModelAdmin):
    list_display = ["name", "last_run_at", "hostname", "runs"]
    readonly_fields = ["name", "last_run_at", "hostname", "runs"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(GraphSubscription)
class GraphSubscriptionAdmin(admin.ModelAdmin):
    """Graph change-notification subscriptions: what is watched, until when, and whether it
    works. The actions call Graph through the same services as beat's jobs."""

    list_display = [
        "resource",
        "kind",
        "target_id",
        "state",
        "expires_at",
        "last_notification_at",
        "last_renewed_at",
        "failures",
    ]
    list_filter = ["state", "kind"]
    search_fields = ["resource", "graph_id"]
    readonly_fields = [field.name for field in GraphSubscription._meta.fields]
    actions = ["renew", "recreate", "delete_in_graph"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Renew the selected subscriptions", permissions=["view"])
    def renew(self, request: HttpRequest, queryset: QuerySet[GraphSubscription]) -> None:
        self._report(request, queryset, subscriptions.subscription_renew, "renewed")

    @admin.action(description="Recreate the selected subscriptions", permissions=["view"])
    def recreate(self, request: HttpRequest, queryset: QuerySet[GraphSubscription]) -> None:
        self._report(request, queryset, subscriptions.subscription_create, "recreated")

    @admin.action(description="Delete the selected subscriptions in Graph", permissions=["delete"])
    def delete_in_graph(self, request: HttpRequest, queryset: QuerySet[GraphSubscription]) -> None:
        count = 0
        for subscription in queryset:
            subscriptions.subscription_delete(subscription=subscription)
            count += 1
        self.message_user(request, f"Deleted {count} subscription(s) in Graph and here.")

    def _report(self, request, queryset, change, done: str) -> None:
        results = [change(subscription=subscription) for subscription in queryset]
        working = sum(result.state == "active" for result in results)
        self.message_user(request, f"{working} of {len(results)} subscription(s) {done}.")
        for result in results:
            if result.state != "active":
                self.message_user(request, f"{result}: {result.last_error}", messages.ERROR)

    def get_actions(self, request: HttpRequest):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deleting rows alone would leave Graph calling
        return actions


STATE_COLOURS = {
    alerts.SecretState.OK: "#1e7e34",
    alerts.SecretState.EXPIRES_SOON: "#b26a00",
    alerts.SecretState.EXPIRED: "#ba2121",
}


@admin.register(GraphAppSecret)
class GraphAppSecretAdmin(admin.ModelAdmin):
    """Expiry dates of the Entra app registration's client secrets (never the secrets): beat
    warns admins by email before one expires and the admin index shows a notice."""

    list_display = ["label", "client_id", "expires_at", "days_left", "state"]
    search_fields = ["label", "client_id", "note"]
    ordering = ["expires_at"]
    fields = [
        "client_id",
        "label",
        "expires_at",
        "note",
        "warned_days",
        "expired_warned_at",
        "last_warned_at",
    ]
    readonly_fields = ["warned_days", "expired_warned_at", "last_warned_at"]

    @admin.display(description="Days left", ordering="expires_at")
    def days_left(self, secret: GraphAppSecret) -> int:
        return alerts.days_left(expires_at=secret.expires_at)

    @admin.display(description="State", ordering="expires_at")
    def state(self, secret: GraphAppSecret) -> str:
        state = alerts.app_secret_state(expires_at=secret.expires_at)
        return format_html(
            '<strong class="app-secret-state" style="color: {}">{}</strong>',
            STATE_COLOURS[state],
            state,
        )

    def save_model(
        self, request: HttpRequest, obj: GraphAppSecret, form: forms.Form, change: bool
    ) -> None:
        alerts.app_secret_save(secret=obj)
