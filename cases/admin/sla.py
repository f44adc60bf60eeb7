"""SLA configuration in the admin: business calendars (weekly hours, holidays, iCalendar
import), SLA policies with their targets, and the SLA report page.

Only admins configure SLAs (leads hold no permissions on these models); the report page is
open to every staff user and counts the cases they may see, like the API it mirrors.

Bad input never saves half a change: the whole week of business hours is validated in the
inline formset's `clean` and a holiday file is parsed in the form's `clean`, both before the
admin saves anything (and the admin saves in one transaction). Every successful save, delete
or import calls `sla_config_changed()`, which recomputes open cases' deadlines after commit.
"""

from __future__ import annotations

import re
import zoneinfo
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from typing import Any
from urllib.parse import urlencode

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.widgets import AdminTimeWidget
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import Count, Q, QuerySet
from django.forms.models import BaseInlineFormSet, ModelFormMetaclass
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html

from cases.analytics import MAX_PERIOD_DAYS, Period, TrendGrouping
from cases.choices import (
    OPEN_CASE_STATUSES,
    CaseType,
    Channel,
    OrganizationTier,
    Priority,
    SlaMetric,
)
from cases.models import BusinessCalendar, BusinessHours, Holiday, SlaPolicy, SlaTarget
from cases.services.sla import holidays_merge, sla_config_changed
from cases.sla.holidays import MAX_ICS_BYTES, HolidayFileError, fetch_ics, parse_ics
from cases.sla.holidays import Holiday as ParsedHoliday
from cases.sla.hours import WEEKDAY_NAMES, Interval, validate_weekly_hours
from cases.sla_reports import SlaGrouping, sla_report
from crm import selectors as crm_selectors
from crm.models import Team

# Most urgent first: the order people think of targets in.
PRIORITIES = list(reversed(Priority.values))
METRICS = SlaMetric.values


class ConfigChangedAdminMixin:
    """Saving or deleting recomputes open cases' deadlines (after commit)."""

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        sla_config_changed()

    def delete_model(self, request: HttpRequest, obj) -> None:
        super().delete_model(request, obj)
        sla_config_changed()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        sla_config_changed()


# --- holidays -----------------------------------------------------------------------------------


def _import_summary(calendar: BusinessCalendar, found: int, added: int, renamed: int) -> str:
    unchanged = found - added - renamed
    return (
        f"{calendar.name}: {found} holidays in the file: {added} added, {renamed} renamed, "
        f"{unchanged} unchanged."
    )


@cache
def timezone_choices() -> list[tuple[str, str]]:
    return [(name, name) for name in sorted(zoneinfo.available_timezones())]


class BusinessCalendarForm(forms.ModelForm):
    """The calendar, plus an optional holiday file (or a fetch of the holiday URL) that is
    parsed before anything is saved."""

    timezone = forms.ChoiceField(
        choices=timezone_choices,
        initial="Europe/Berlin",
        label="Time zone",
        help_text="Business hours and holidays are local to it.",
    )
    holidays_file = forms.FileField(
        required=False,
        label="Import holidays from a file",
        help_text="An iCalendar (.ics) file: its all-day events become holidays of this "
        "calendar; days already listed take the file's names, other days are kept.",
    )
    holidays_url = forms.URLField(
        required=False,
        assume_scheme="https",
        label="Holidays URL",
        help_text="An iCalendar (.ics) address to import holidays from.",
    )
    import_url_now = forms.BooleanField(
        required=False,
        label="Import from the address now",
        help_text="Fetch the holidays URL when saving (the calendar list has the same as "
        "an action).",
    )

    class Meta:
        model = BusinessCalendar
        fields = ["name", "timezone", "is_default", "holidays_url"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.holidays_to_import: list[ParsedHoliday] = []

    def clean_holidays_file(self) -> Any:
        upload = self.cleaned_data.get("holidays_file")
        if upload is None:
            return upload
        if upload.size > MAX_ICS_BYTES:
            raise ValidationError(
                f"The file is larger than {MAX_ICS_BYTES // (1024 * 1024)} MB; "
                "is it a holiday calendar?"
            )
        try:
            self.holidays_to_import += parse_ics(upload.read())
        except HolidayFileError as exc:
            raise ValidationError(str(exc)) from None
        return upload

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("import_url_now"):
            url = data.get("holidays_url")
            if not url:
                if "holidays_url" not in self.errors:
                    self.add_error("holidays_url", "Give the address to import holidays from.")
                return data
            try:
                self.holidays_to_import += parse_ics(fetch_ics(url))
            except HolidayFileError as exc:
                self.add_error("holidays_url", str(exc))
        return data


class BusinessHoursFormSet(BaseInlineFormSet):
    """The week is validated as a whole (overlaps across days and midnight, an empty week,
    zero-length intervals) before the calendar or any row is saved."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        weekly: dict[int, list[Interval]] = {}
        for form in self.forms:
            if not form.cleaned_data or self._should_delete_form(form):
                continue
            data = form.cleaned_data
            weekly.setdefault(data["weekday"], []).append(Interval(data["start"], data["end"]))
        problems = validate_weekly_hours(weekly)
        if problems:
            raise ValidationError(problems)


class BusinessHoursInline(admin.TabularInline):
    model = BusinessHours
    formset = BusinessHoursFormSet
    fields = ["weekday", "start", "end"]
    formfield_overrides = {models.TimeField: {"widget": AdminTimeWidget(format="%H:%M")}}
    verbose_name_plural = (
        "Weekly business hours (an end at or before the start runs past midnight; "
        "00:00–00:00 is the whole day)"
    )

    def get_extra(self, request: HttpRequest, obj: BusinessCalendar | None = None, **kwargs):
        return 5 if obj is None else 1


class HolidayInline(admin.TabularInline):
    """Holidays from the start of last year on: imported feeds can hold many years, and a
    form with every past day would soon exceed what one request may post. Older days stay
    as they are."""

    model = Holiday
    fields = ["date", "name"]
    extra = 1
    verbose_name_plural = "Holidays since the start of last year (whole local days off)"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Holiday]:
        since = date(timezone.localdate().year - 1, 1, 1)
        return super().get_queryset(request).filter(date__gte=since)


@admin.register(BusinessCalendar)
class BusinessCalendarAdmin(ConfigChangedAdminMixin, admin.ModelAdmin):
    """Business calendars. A calendar that policies use cannot be deleted (protected)."""

    form = BusinessCalendarForm
    inlines = [BusinessHoursInline, HolidayInline]
    list_display = ["name", "timezone", "is_default", "week", "holiday_count", "policy_count"]
    search_fields = ["name"]
    actions = ["import_holidays_from_url"]
    fieldsets = [
        (None, {"fields": ["name", "timezone", "is_default"]}),
        ("Holiday import", {"fields": ["holidays_file", "holidays_url", "import_url_now"]}),
    ]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BusinessCalendar]:
        return (
            super()
            .get_queryset(request)
            .prefetch_related("hours")
            .annotate(
                holiday_total=Count("holidays", distinct=True),
                policy_total=Count("policies", distinct=True),
            )
        )

    @admin.display(description="Week")
    def week(self, calendar: BusinessCalendar) -> str:
        spans = [
            f"{WEEKDAY_NAMES[h.weekday][:2]} {h.start:%H:%M}–{h.end:%H:%M}"
            for h in calendar.hours.all()
        ]
        return ", ".join(spans) or "—"

    @admin.display(description="Holidays", ordering="holiday_total")
    def holiday_count(self, calendar: BusinessCalendar) -> int:
        return calendar.holiday_total

    @admin.display(description="Policies", ordering="policy_total")
    def policy_count(self, calendar: BusinessCalendar) -> int:
        return calendar.policy_total

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        super().save_related(request, form, formsets, change)
        # After the inline formsets, so an imported day wins over the same day typed in.
        found = getattr(form, "holidays_to_import", [])
        if found:
            counts = holidays_merge(calendar=form.instance, holidays=found)
            self.message_user(request, _import_summary(form.instance, *counts))

    @admin.action(description="Import holidays from URL")
    def import_holidays_from_url(
        self, request: HttpRequest, queryset: QuerySet[BusinessCalendar]
    ) -> None:
        """Each calendar on its own: one whose address fails keeps its holidays unchanged
        and says why; the others are imported."""
        imported = False
        for calendar in queryset.order_by("name"):
            if not calendar.holidays_url:
                self.message_user(
                    request,
                    f"{calendar.name}: no holiday address to import from.",
                    messages.WARNING,
                )
                continue
            try:
                found = parse_ics(fetch_ics(calendar.holidays_url))
            except HolidayFileError as exc:
                self.message_user(request, f"{calendar.name}: {exc} Nothing imported.",
                                  messages.ERROR)  # fmt: skip
                continue
            with transaction.atomic():
                counts = holidays_merge(calendar=calendar, holidays=found)
            self.message_user(request, _import_summary(calendar, *counts))
            imported = True
        if imported:
            sla_config_changed()


# --- policies -----------------------------------------------------------------------------------

_UNITS = {"": 1, "m": 1, "min": 1, "mins": 1, "minute": 1, "minutes": 1, "h": 60, "hr": 60,
          "hrs": 60, "hour": 60, "hours": 60, "d": 1440, "day": 1440, "days": 1440,
          "w": 10080, "week": 10080, "weeks": 10080}  # fmt: skip
_PART = re.compile(r"(\d+(?:[.,]\d+)?)\s*([a-z]*)")
MAX_TARGET_MINUTES = 366 * 1440


def parse_duration_minutes(text: str) -> int:
    """`90`, `90m`, `1h`, `1.5h`, `1h30m`, `2d`, `1d 4h` → minutes (a bare number is minutes).

    `d` is 24 hours also for targets in business time: write business days as hours (a
    08:00–18:00 business day is `10h`). Raises ValueError with a message for the form."""
    compact = text.strip().lower()
    parts = list(_PART.finditer(compact))
    if not parts or _PART.sub("", compact).strip(" ,+"):
        raise ValueError(f"“{text}” is not a duration: write e.g. 90m, 1h, 1h30m or 2d.")
    total = 0.0
    for part in parts:
        unit = _UNITS.get(part.group(2))
        if unit is None:
            raise ValueError(f"Unknown unit “{part.group(2)}”: use m, h, d or w.")
        total += float(part.group(1).replace(",", ".")) * unit
    minutes = round(total)
    if minutes < 1:
        raise ValueError("A target is at least one minute.")
    if minutes > MAX_TARGET_MINUTES:
        raise ValueError("A target is at most 366 days.")
    return minutes


def format_minutes(minutes: int) -> str:
    """The shortest of `Nd`, `Nh`, `NhMm`, `Nm` that states `minutes` exactly."""
    if minutes % 1440 == 0:
        return f"{minutes // 1440}d"
    if minutes % 60 == 0:
        return f"{minutes // 60}h"
    if minutes > 60:
        return f"{minutes // 60}h{minutes % 60}m"
    return f"{minutes}m"


class DurationMinutesField(forms.CharField):
    """A target's time as people write it (see `parse_duration_minutes`); blank: no target."""

    widget = forms.TextInput(attrs={"size": 7, "placeholder": "e.g. 4h"})

    def prepare_value(self, value: Any) -> Any:
        return format_minutes(value) if isinstance(value, int) else value

    def to_python(self, value: Any) -> int | None:
        text = super().to_python(value)
        if not text:
            return None
        try:
            return parse_duration_minutes(text)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None


def target_field(priority: str, metric: str) -> str:
    return f"target_{priority}_{metric}"


def business_field(priority: str, metric: str) -> str:
    return f"target_{priority}_{metric}_business"


def _target_fields() -> dict[str, forms.Field]:
    fields: dict[str, forms.Field] = {}
    for priority in PRIORITIES:
        for metric in METRICS:
            label = f"{Priority(priority).label}: {SlaMetric(metric).label.lower()}"
            fields[target_field(priority, metric)] = DurationMinutesField(
                required=False,
                label=label,
                widget=forms.TextInput(
                    attrs={"size": 7, "placeholder": "e.g. 4h", "aria-label": label}
                ),
            )
            fields[business_field(priority, metric)] = forms.BooleanField(
                required=False, initial=True, label=f"{label} in business time"
            )
    return fields


CONDITION_FIELDS = ("priorities", "types", "channels", "tiers", "vip", "teams", "tags")


def _choices_field(choices: list, label: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=choices,
        required=False,
        label=label,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: any.",
    )


def _is_set(value: Any) -> bool:
    """A condition holds something: ticked choices, VIP or not, chosen teams or tags."""
    if isinstance(value, QuerySet):
        return value.exists()
    return bool(value)


class SlaPolicyFormBase(forms.ModelForm):
    """A policy, its conditions as ticks (none ticked: any) and its targets as a grid of one
    line per priority: first response, next response, resolution, each with its own
    business-time tick. Blank cells are no target."""

    priorities = _choices_field(Priority.choices, "Priorities")
    types = _choices_field(CaseType.choices, "Types")
    channels = _choices_field(Channel.choices, "Channels")
    tiers = _choices_field(OrganizationTier.choices, "Organization tiers")
    at_risk_percent = forms.IntegerField(
        min_value=1,
        max_value=99,
        initial=80,
        help_text="A target is at risk once this share of its time is used (1–99).",
    )

    class Meta:
        model = SlaPolicy
        fields = [
            "name",
            "order",
            "active",
            "is_default",
            "calendar",
            "priorities",
            "types",
            "channels",
            "tiers",
            "vip",
            "teams",
            "tags",
            "pause_awaiting_customer",
            "pause_awaiting_vendor",
            "at_risk_percent",
        ]
        widgets = {"teams": forms.CheckboxSelectMultiple}
        labels = {"vip": "VIP", "is_default": "Default (catch-all)"}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            for target in self.instance.targets.all():
                self.initial[target_field(target.priority, target.metric)] = target.minutes
                self.initial[business_field(target.priority, target.metric)] = target.business_time
            # Unset cells of a saved policy have no target; their tick starts as business time.
            for priority in PRIORITIES:
                for metric in METRICS:
                    self.initial.setdefault(business_field(priority, metric), True)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("priorities", "types", "channels", "tiers"):
            if name in data:
                order = [value for value, _ in self.fields[name].choices]
                data[name] = sorted(data[name], key=order.index)
        if not self.target_minutes() and not any(
            target_field(p, m) in self.errors for p in PRIORITIES for m in METRICS
        ):
            raise ValidationError(
                "Give at least one target (for example urgent: first response 1h): "
                "a policy without targets gives no case a deadline.",
                code="no_targets",
            )
        if data.get("is_default"):
            self._check_catch_all(data)
        return data

    def _check_catch_all(self, data: dict[str, Any]) -> None:
        """The default catches every case no other policy matches, so a condition would
        leave cases without any policy; an inactive default would catch none."""
        conditions = [
            str(self.fields[name].label).lower()
            for name in CONDITION_FIELDS
            if _is_set(data.get(name))
        ]
        if conditions:
            self.add_error(
                "is_default",
                "The default policy is the catch-all and has no conditions; clear "
                f"{', '.join(conditions)} or untick default.",
            )
        if not data.get("active", True):
            self.add_error("active", "The default policy must be active: it catches every case.")

    def target_rows(self) -> list[dict[str, Any]]:
        """The grid for the change form's template: a row per priority, a cell per metric
        (its duration field and its business-time tick)."""
        return [
            {
                "label": Priority(priority).label,
                "cells": [
                    {
                        "minutes": self[target_field(priority, metric)],
                        "business": self[business_field(priority, metric)],
                    }
                    for metric in METRICS
                ],
            }
            for priority in PRIORITIES
        ]

    def target_minutes(self) -> dict[tuple[str, str], tuple[int, bool]]:
        """(priority, metric) → (minutes, business time) for every filled cell."""
        found = {}
        data = getattr(self, "cleaned_data", {})
        for priority in PRIORITIES:
            for metric in METRICS:
                minutes = data.get(target_field(priority, metric))
                if minutes:
                    found[priority, metric] = (
                        minutes,
                        bool(data.get(business_field(priority, metric))),
                    )
        return found

    def save_targets(self, policy: SlaPolicy) -> None:
        """Make the policy's targets the grid's: filled cells upserted, blank ones removed."""
        wanted = self.target_minutes()
        existing = {(t.priority, t.metric): t for t in policy.targets.all()}
        stale = [t.pk for key, t in existing.items() if key not in wanted]
        SlaTarget.objects.filter(pk__in=stale).delete()
        SlaTarget.objects.bulk_create(
            [
                SlaTarget(
                    policy=policy, priority=priority, metric=metric, minutes=m, business_time=b
                )
                for (priority, metric), (m, b) in wanted.items()
            ],
            update_conflicts=True,
            unique_fields=["policy", "priority", "metric"],
            update_fields=["minutes", "business_time"],
        )


SlaPolicyForm = ModelFormMetaclass(
    "SlaPolicyForm", (SlaPolicyFormBase,), {"__module__": __name__, **_target_fields()}
)


TARGETS_HELP = (
    "Per priority, the time to the first response, to each next response (after every "
    "customer message) and to resolution: 90m, 1h, 1h30m, 2d (a bare number is minutes; d is "
    "24 hours, so write a business day of 08:00–18:00 as 10h). Blank: no target. Business "
    "time counts only the calendar's hours, otherwise the clock runs around the clock."
)


@admin.register(SlaPolicy)
class SlaPolicyAdmin(ConfigChangedAdminMixin, admin.ModelAdmin):
    """SLA policies, tried in `order`: the first active one whose conditions all hold applies,
    and the default catches the rest."""

    form = SlaPolicyForm
    list_display = ["name", "order", "active", "is_default", "conditions", "targets_summary",
                    "calendar", "open_cases"]  # fmt: skip
    list_display_links = ["name"]
    list_editable = ["order"]
    list_filter = ["active", "is_default", "calendar"]
    search_fields = ["name"]
    filter_horizontal = ["tags"]
    fieldsets = [
        (None, {"fields": ["name", "order", "active", "is_default", "calendar"]}),
        (
            "Conditions (all must hold; none given: every case)",
            {"fields": ["priorities", "types", "channels", "tiers", "vip", "teams", "tags"]},
        ),
        (
            "Clocks",
            {"fields": ["pause_awaiting_customer", "pause_awaiting_vendor", "at_risk_percent"]},
        ),
    ]

    def render_change_form(self, request: HttpRequest, context: dict, *args, **kwargs):
        context["targets_help"] = TARGETS_HELP
        context["metric_labels"] = [SlaMetric(metric).label for metric in METRICS]
        return super().render_change_form(request, context, *args, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[SlaPolicy]:
        is_open = Q(cases__status__in=OPEN_CASE_STATUSES, cases__merged_into__isnull=True)
        return (
            super()
            .get_queryset(request)
            .select_related("calendar")
            .prefetch_related("teams", "tags", "targets")
            .annotate(open_case_total=Count("cases", filter=is_open))
        )

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        if isinstance(form, SlaPolicyFormBase):  # not the changelist's order-only form
            form.save_targets(form.instance)
        super().save_related(request, form, formsets, change)

    @admin.display(description="Conditions")
    def conditions(self, policy: SlaPolicy) -> str:
        parts = []
        for name, choices in (("priorities", Priority), ("types", CaseType),
                              ("channels", Channel), ("tiers", OrganizationTier)):  # fmt: skip
            values = getattr(policy, name) or []
            if values:
                labels = [str(choices(v).label) if v in choices.values else v for v in values]
                parts.append(f"{name}: {', '.join(labels)}")
        if policy.vip:
            parts.append(policy.get_vip_display())
        for name in ("teams", "tags"):
            names = [str(item) for item in getattr(policy, name).all()]
            if names:
                parts.append(f"{name}: {', '.join(names)}")
        return "; ".join(parts) or ("catch-all" if policy.is_default else "every case")

    @admin.display(description="Targets (first / next / resolution)")
    def targets_summary(self, policy: SlaPolicy) -> str:
        by_key = {(t.priority, t.metric): t for t in policy.targets.all()}
        lines = []
        for priority in PRIORITIES:
            cells = []
            for metric in METRICS:
                target = by_key.get((priority, metric))
                cells.append(
                    "—"
                    if target is None
                    else format_minutes(target.minutes) + ("" if target.business_time else " cal")
                )
            if any(cell != "—" for cell in cells):
                lines.append(f"{priority} {'/'.join(cells)}")
        return "; ".join(lines)

    @admin.display(description="Open cases", ordering="open_case_total")
    def open_cases(self, policy: SlaPolicy) -> str:
        if not policy.open_case_total:
            return "0"
        query = urlencode(
            {"sla_policy__id__exact": policy.pk, "status__in": ",".join(OPEN_CASE_STATUSES)}
        )
        url = f"{reverse('admin:cases_case_changelist')}?{query}"
        return format_html('<a href="{}">{}</a>', url, policy.open_case_total)

    # --- the report page ----------------------------------------------------------------

    def get_urls(self) -> list:
        report = path(
            "report/",
            self.admin_site.admin_view(self.report_view),
            name="cases_slapolicy_report",
        )
        return [report, *super().get_urls()]

    def report_view(self, request: HttpRequest) -> TemplateResponse:
        """The figures of /api/v1/analytics/sla for a period, as tables. Any staff user may
        look; the figures count only the cases they may see."""
        form = SlaReportForm(SlaReportForm.with_defaults(request.GET), user=request.user)
        report = api_url = None
        if form.is_valid():
            data = form.cleaned_data
            team = data.get("team")
            report = sla_report(
                user=request.user,
                period=form.period(),
                group_by=data["group_by"],
                interval=data["interval"],
                team_id=team.pk if team else None,
            )
            api_url = f"{reverse('analytics-sla')}?{urlencode(form.api_query())}"
        context = {
            **self.admin_site.each_context(request),
            "title": "SLA report",
            "opts": self.opts,
            "form": form,
            "report": report,
            "api_url": api_url,
            "sections": _sections(report),
            "metrics": [(metric, SlaMetric(metric).label) for metric in METRICS],
        }
        return TemplateResponse(request, "admin/cases/slapolicy/report.html", context)


def _sections(report: Any) -> list[dict[str, Any]]:
    if report is None:
        return []
    return [
        {
            "metric": metric,
            "label": SlaMetric(metric).label,
            "rows": report.compliance[metric],
            "total": report.totals[metric],
            "now": report.now.by_metric[metric],
            "distribution": report.distributions.get(metric),
            "percentiles": _readable_percentiles(report.distributions.get(metric)),
        }
        for metric in METRICS
    ]


def _readable(seconds: float | None) -> str:
    """1 d 2 h, 3 h 5 min, 12 min, 40 s: the two largest units, for people."""
    if seconds is None:
        return "—"
    left = round(seconds)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size} {unit}")
            left %= size
    return " ".join(parts[:2])


def _readable_percentiles(distribution: Any) -> list[tuple[str, str]]:
    if distribution is None:
        return []
    return [(name, _readable(value)) for name, value in distribution.percentiles.items()]


class SlaReportForm(forms.Form):
    """The report page's period (whole UTC days, both inclusive), grouping and team."""

    start = forms.DateField(label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(
        label="Until (inclusive)", widget=forms.DateInput(attrs={"type": "date"})
    )
    group_by = forms.ChoiceField(choices=SlaGrouping.choices, label="Group by")
    interval = forms.ChoiceField(choices=TrendGrouping.choices, label="Trend per")
    team = forms.ModelChoiceField(queryset=Team.objects.none(), required=False)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["team"].queryset = crm_selectors.team_list(user=user).order_by("name")

    @staticmethod
    def with_defaults(query: Any) -> dict[str, Any]:
        """The last 30 days, per policy, by day, unless the query says otherwise."""
        default = Period.default()
        data = {
            "start": default.start.date().isoformat(),
            "until": (default.end - timedelta(days=1)).date().isoformat(),
            "group_by": SlaGrouping.POLICY,
            "interval": TrendGrouping.DAY,
        }
        data.update({key: value for key, value in query.items() if value != ""})
        return data

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, until = data.get("start"), data.get("until")
        if start and until:
            if until < start:
                self.add_error("until", "The end must not be before the start.")
            elif (until - start).days + 1 > MAX_PERIOD_DAYS:
                self.add_error("until", f"Choose at most {MAX_PERIOD_DAYS} days.")
        return data

    def period(self) -> Period:
        start: date = self.cleaned_data["start"]
        until: date = self.cleaned_data["until"]
        return Period(
            start=datetime.combine(start, time.min, tzinfo=UTC),
            end=datetime.combine(until + timedelta(days=1), time.min, tzinfo=UTC),
        )

    def api_query(self) -> dict[str, str]:
        """The same report's parameters for /api/v1/analytics/sla (whose `to` is exclusive)."""
        period = self.period()
        query = {
            "from": period.start.date().isoformat(),
            "to": period.end.date().isoformat(),
            "group_by": self.cleaned_data["group_by"],
            "interval": self.cleaned_data["interval"],
        }
        if self.cleaned_data.get("team"):
            query["team"] = str(self.cleaned_data["team"].pk)
        return query
