"""SLA configuration in the admin: business calendars (hours, holidays, iCalendar import) and
SLA policies with their targets, through HTTP requests to /admin/ as a back-office user would.

Every successful save asks for the open cases' deadlines to be recomputed after commit; where
that matters end to end, the recompute runs (eager Celery) and the case's deadline is checked.
"""

from __future__ import annotations

import http.server
import threading
from datetime import UTC, date, datetime, time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.utils import timezone

from cases.models import BusinessCalendar, BusinessHours, Case, Holiday, SlaPolicy, SlaTarget
from cases.tasks import sla_recompute
from crm.celery import app as celery_app
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

CALENDARS = "/admin/cases/businesscalendar/"
POLICIES = "/admin/cases/slapolicy/"
WEEKDAYS_8_TO_18 = [(day, "08:00", "18:00") for day in range(5)]


HOLIDAYS_ICS = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//support-crm tests//holidays//EN\r
BEGIN:VEVENT\r
UID:einheit@test\r
DTSTART;VALUE=DATE:20261003\r
SUMMARY:Tag der Deutschen Einheit\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weihnachten@test\r
DTSTART;VALUE=DATE:20261225\r
DTEND;VALUE=DATE:20261227\r
SUMMARY:Weihnachten\r
END:VEVENT\r
END:VCALENDAR\r
"""


# --- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def boss():
    return make_agent(role="admin", first_name="Grace", last_name="Hopper")


@pytest.fixture
def admin_web(boss) -> Client:
    client = Client()
    client.force_login(boss)
    return client


@pytest.fixture(autouse=True)
def recomputes(monkeypatch) -> list:
    """Each time the recompute of open cases' deadlines is queued. It runs only with eager
    Celery (the tests that check its effect); otherwise nothing is sent to a broker."""
    queued: list = []
    queue = sla_recompute.delay

    def delay(*args, **kwargs):
        queued.append(args)
        return queue(*args, **kwargs) if celery_app.conf.task_always_eager else None

    monkeypatch.setattr(sla_recompute, "delay", delay)
    return queued


@pytest.fixture
def post(django_capture_on_commit_callbacks):
    """POST as the browser would; what the view queued after commit runs when it answers."""

    def send(client: Client, url: str, data: dict, **extra):
        with django_capture_on_commit_callbacks(execute=True):
            return client.post(url, data, **extra)

    return send


def management(prefix: str, total: int, initial: int = 0) -> dict[str, str]:
    return {
        f"{prefix}-TOTAL_FORMS": str(total),
        f"{prefix}-INITIAL_FORMS": str(initial),
        f"{prefix}-MIN_NUM_FORMS": "0",
        f"{prefix}-MAX_NUM_FORMS": "1000",
    }


def calendar_data(
    *,
    name: str = "Office",
    timezone: str = "Europe/Berlin",
    hours=WEEKDAYS_8_TO_18,
    holidays=(),
    **fields,
) -> dict:
    """The add form of a calendar as posted: its fields and both inlines."""
    data = {"name": name, "timezone": timezone, "holidays_url": "", **fields}
    data |= management("hours", len(hours))
    for i, (day, start, end) in enumerate(hours):
        data |= {f"hours-{i}-weekday": str(day), f"hours-{i}-start": start, f"hours-{i}-end": end}
    data |= management("holidays", len(holidays))
    for i, (day, holiday_name) in enumerate(holidays):
        data |= {f"holidays-{i}-date": day, f"holidays-{i}-name": holiday_name}
    return data


def existing_calendar_data(calendar: BusinessCalendar, *, hours=None, **fields) -> dict:
    """The change form of `calendar` as posted: its rows as they are, `hours` (weekday,
    start, end) replacing the weekly hours when given (the old rows are deleted)."""
    data = {"name": calendar.name, "timezone": calendar.timezone,
            "holidays_url": calendar.holidays_url, **fields}  # fmt: skip
    if calendar.is_default:
        data["is_default"] = "on"
    rows = list(calendar.hours.all())
    new = list(hours) if hours is not None else []
    data |= management("hours", len(rows) + len(new), initial=len(rows))
    for i, row in enumerate(rows):
        data |= {f"hours-{i}-id": str(row.pk), f"hours-{i}-calendar": str(calendar.pk),
                 f"hours-{i}-weekday": str(row.weekday), f"hours-{i}-start": f"{row.start:%H:%M}",
                 f"hours-{i}-end": f"{row.end:%H:%M}"}  # fmt: skip
        if hours is not None:
            data[f"hours-{i}-DELETE"] = "on"
    for j, (day, start, end) in enumerate(new, start=len(rows)):
        data |= {f"hours-{j}-weekday": str(day), f"hours-{j}-start": start, f"hours-{j}-end": end}
    holidays = list(calendar.holidays.all())
    data |= management("holidays", len(holidays), initial=len(holidays))
    for i, holiday in enumerate(holidays):
        data |= {f"holidays-{i}-id": str(holiday.pk), f"holidays-{i}-calendar": str(calendar.pk),
                 f"holidays-{i}-date": holiday.date.isoformat(),
                 f"holidays-{i}-name": holiday.name}  # fmt: skip
    return data


def make_calendar(name: str = "Office", *, default: bool = False) -> BusinessCalendar:
    calendar = BusinessCalendar.objects.create(name=name, is_default=default)
    BusinessHours.objects.bulk_create(
        BusinessHours(calendar=calendar, weekday=day, start=time(8), end=time(18))
        for day in range(5)
    )
    return calendar


def errors_of(response) -> list[str]:
    """Every error message the admin form page shows: fields, form and inline formsets."""
    messages = []
    form = response.context["adminform"].form
    for field_errors in form.errors.values():
        messages += list(field_errors)
    for inline in response.context["inline_admin_formsets"]:
        messages += list(inline.formset.non_form_errors())
        for form_errors in inline.formset.errors:
            for field_errors in form_errors.values():
                messages += list(field_errors)
    return messages


# --- calendars: business hours ------------------------------------------------------------------


def test_an_admin_creates_a_calendar_with_hours_and_holidays(admin_web, post, recomputes):
    data = calendar_data(holidays=[("2026-12-24", "Heiligabend")], is_default="on")

    response = post(admin_web, f"{CALENDARS}add/", data)

    assert response.status_code == 302, errors_of(response)
    calendar = BusinessCalendar.objects.get(name="Office")
    assert calendar.timezone == "Europe/Berlin"
    assert calendar.is_default
    assert sorted((h.weekday, h.start, h.end) for h in calendar.hours.all()) == [
        (day, time(8), time(18)) for day in range(5)
    ]
    assert list(calendar.holidays.values_list("date", "name")) == [
        (date(2026, 12, 24), "Heiligabend")
    ]
    assert len(recomputes) == 1


@pytest.mark.parametrize(
    ("hours", "message"),
    [
        ([(0, "08:00", "12:00"), (0, "11:00", "18:00")], "Monday 08:00-12:00 overlaps Monday "
                                                         "11:00-18:00."),
        # Sunday's night shift runs into Monday morning, across the week's end.
        ([(6, "22:00", "06:00"), (0, "05:00", "09:00")], "overlaps"),
        ([(2, "09:00", "09:00")], "Wednesday 09:00-09:00 has zero length"),
        ([], "No business hours: add at least one interval to one weekday."),
    ],
)  # fmt: skip
def test_bad_weekly_hours_are_form_errors_and_nothing_is_saved(
    admin_web, post, recomputes, hours, message
):
    response = post(admin_web, f"{CALENDARS}add/", calendar_data(hours=hours))

    assert response.status_code == 200
    assert any(message in error for error in errors_of(response)), errors_of(response)
    assert not BusinessCalendar.objects.exists()
    assert not BusinessHours.objects.exists()
    assert recomputes == []


def test_overlapping_hours_on_a_saved_calendar_keep_the_calendar_unchanged(
    admin_web, post, recomputes
):
    calendar = make_calendar()
    data = existing_calendar_data(calendar, hours=[(4, "16:00", "02:00"), (5, "00:00", "04:00")])
    data["name"] = "Renamed"

    response = post(admin_web, f"{CALENDARS}{calendar.pk}/change/", data)

    assert response.status_code == 200
    assert any("Friday 16:00-02:00 overlaps Saturday 00:00-04:00." in e
               for e in errors_of(response))  # fmt: skip
    calendar.refresh_from_db()
    assert calendar.name == "Office"
    assert calendar.hours.count() == 5
    assert recomputes == []


def test_changing_the_hours_moves_open_cases_deadlines(admin_web, post, eager_celery):
    calendar = make_calendar(default=True)
    policy = SlaPolicy.objects.create(name="Standard", is_default=True)
    SlaTarget.objects.create(policy=policy, priority="normal", metric="resolution", minutes=60)
    case = CaseFactory(team=TeamFactory())
    Case.objects.filter(pk=case.pk).update(created_at=datetime(2026, 6, 1, 7, tzinfo=UTC))
    night_shift = [(day, "20:00", "06:00") for day in range(7)]

    response = post(admin_web, f"{CALENDARS}{calendar.pk}/change/",
                    existing_calendar_data(calendar, hours=night_shift))  # fmt: skip

    assert response.status_code == 302, errors_of(response)
    case.refresh_from_db()
    # Monday 1 June 2026, 09:00 Berlin (07:00 UTC): the next business hour starts at 20:00.
    assert case.sla_resolution_due == datetime(2026, 6, 1, 19, tzinfo=UTC)


def test_an_unknown_time_zone_is_a_form_error(admin_web, post):
    response = post(admin_web, f"{CALENDARS}add/", calendar_data(timezone="Europe/Atlantis"))

    assert response.status_code == 200
    assert "timezone" in response.context["adminform"].form.errors
    assert not BusinessCalendar.objects.exists()


def test_the_changelist_shows_the_week_and_counts(admin_web):
    calendar = make_calendar()
    Holiday.objects.create(calendar=calendar, date=date(2026, 1, 1), name="Neujahr")

    page = admin_web.get(CALENDARS)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Mo 08:00–18:00" in html
    assert "Fr 08:00–18:00" in html


# --- calendars: holiday import --------------------------------------------------------------------


def test_a_holiday_file_uploaded_with_a_new_calendar_is_imported(admin_web, post, recomputes):
    upload = SimpleUploadedFile("feiertage.ics", HOLIDAYS_ICS, content_type="text/calendar")

    response = post(admin_web, f"{CALENDARS}add/", calendar_data(holidays_file=upload),
                    follow=True)  # fmt: skip

    calendar = BusinessCalendar.objects.get()
    assert list(calendar.holidays.values_list("date", "name")) == [
        (date(2026, 10, 3), "Tag der Deutschen Einheit"),
        (date(2026, 12, 25), "Weihnachten"),
        (date(2026, 12, 26), "Weihnachten"),
    ]
    assert "3 holidays in the file: 3 added, 0 renamed, 0 unchanged." in response.content.decode()
    assert recomputes


def test_an_import_adds_new_days_renames_listed_ones_and_keeps_the_others(admin_web, post):
    calendar = make_calendar()
    Holiday.objects.create(calendar=calendar, date=date(2026, 12, 25), name="Xmas")
    Holiday.objects.create(calendar=calendar, date=date(2026, 12, 31), name="Silvester")
    data = existing_calendar_data(calendar)
    data["holidays_file"] = SimpleUploadedFile("h.ics", HOLIDAYS_ICS)

    response = post(admin_web, f"{CALENDARS}{calendar.pk}/change/", data, follow=True)

    assert dict(calendar.holidays.values_list("date", "name")) == {
        date(2026, 10, 3): "Tag der Deutschen Einheit",
        date(2026, 12, 25): "Weihnachten",
        date(2026, 12, 26): "Weihnachten",
        date(2026, 12, 31): "Silvester",
    }
    assert "3 holidays in the file: 2 added, 1 renamed, 0 unchanged." in response.content.decode()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"this is not a calendar", "This is not an iCalendar (.ics) file"),
        (b"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nEND:VCALENDAR\r\n", "The file has no events"),
    ],
)
def test_a_holiday_file_that_does_not_parse_is_a_form_error_and_nothing_is_saved(
    admin_web, post, recomputes, content, message
):
    data = calendar_data(holidays_file=SimpleUploadedFile("bad.ics", content))

    response = post(admin_web, f"{CALENDARS}add/", data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["holidays_file"]
    assert any(message in error for error in errors), errors
    assert not BusinessCalendar.objects.exists()
    assert not Holiday.objects.exists()
    assert recomputes == []


class _HolidayFeed(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        bodies = {"/feiertage.ics": HOLIDAYS_ICS, "/broken.ics": b"<html>not ics</html>"}
        body = bodies.get(self.path)
        self.send_response(200 if body else 404)
        self.send_header("Content-Type", "text/calendar")
        self.send_header("Content-Length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def holiday_feed():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _HolidayFeed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_the_import_action_fetches_each_calendars_address(
    admin_web, post, recomputes, holiday_feed
):
    good = make_calendar("Berlin")
    good.holidays_url = f"{holiday_feed}/feiertage.ics"
    good.save()
    broken = make_calendar("Broken")
    broken.holidays_url = f"{holiday_feed}/broken.ics"
    broken.save()
    Holiday.objects.create(calendar=broken, date=date(2026, 1, 1), name="Neujahr")
    missing = make_calendar("Gone")
    missing.holidays_url = f"{holiday_feed}/gone.ics"
    missing.save()
    no_address = make_calendar("Nowhere")

    response = post(admin_web, CALENDARS, {
        "action": "import_holidays_from_url",
        "_selected_action": [str(c.pk) for c in (good, broken, missing, no_address)],
    }, follow=True)  # fmt: skip

    html = response.content.decode()
    assert good.holidays.count() == 3
    assert "Berlin: 3 holidays in the file: 3 added" in html
    assert "Broken: This is not an iCalendar (.ics) file" in html
    assert list(broken.holidays.values_list("name", flat=True)) == ["Neujahr"]
    assert "Gone: " in html
    assert "answered HTTP 404" in html
    assert "Nowhere: no holiday address to import from." in html
    assert len(recomputes) == 1


def test_importing_from_the_address_on_save(admin_web, post, holiday_feed):
    data = calendar_data(holidays_url=f"{holiday_feed}/feiertage.ics", import_url_now="on")

    response = post(admin_web, f"{CALENDARS}add/", data)

    assert response.status_code == 302, errors_of(response)
    assert BusinessCalendar.objects.get().holidays.count() == 3


def test_an_address_that_fails_on_save_is_a_form_error(admin_web, post, holiday_feed):
    data = calendar_data(holidays_url=f"{holiday_feed}/broken.ics", import_url_now="on")

    response = post(admin_web, f"{CALENDARS}add/", data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["holidays_url"]
    assert "This is not an iCalendar (.ics) file" in errors[0]
    assert not BusinessCalendar.objects.exists()


def test_importing_on_save_needs_an_address(admin_web, post):
    response = post(admin_web, f"{CALENDARS}add/", calendar_data(import_url_now="on"))

    assert response.context["adminform"].form.errors["holidays_url"] == [
        "Give the address to import holidays from."
    ]


# --- policies -----------------------------------------------------------------------------------


def policy_data(name: str = "Standard", *, targets: dict | None = None, **fields) -> dict:
    """The policy form as posted. `targets`: {"urgent": ("1h", "2h", "8h")}; every business
    time tick is on unless `calendar_time` lists (priority, metric) pairs."""
    calendar_time = fields.pop("calendar_time", ())
    data = {"name": name, "order": "10", "active": "on", "calendar": "", "vip": "",
            "pause_awaiting_customer": "on", "at_risk_percent": "80", **fields}  # fmt: skip
    metrics = ("first_response", "next_response", "resolution")
    for priority in ("urgent", "high", "normal", "low"):
        cells = (targets or {}).get(priority, ("", "", ""))
        for metric, value in zip(metrics, cells, strict=True):
            data[f"target_{priority}_{metric}"] = value
            if (priority, metric) not in calendar_time:
                data[f"target_{priority}_{metric}_business"] = "on"
    return data


def targets_of(policy: SlaPolicy) -> set[tuple]:
    return set(policy.targets.values_list("priority", "metric", "minutes", "business_time"))


def test_an_admin_creates_a_policy_from_the_target_grid(admin_web, post, recomputes):
    data = policy_data(
        "Urgent VIPs",
        targets={"urgent": ("1h", "2h", "8h"), "high": ("90", "1h30m", "2d")},
        calendar_time=[("high", "resolution")],
        priorities=["urgent", "high"],
        vip="vip",
    )

    response = post(admin_web, f"{POLICIES}add/", data)

    assert response.status_code == 302, errors_of(response)
    policy = SlaPolicy.objects.get()
    assert policy.priorities == ["high", "urgent"]
    assert policy.vip == "vip"
    assert targets_of(policy) == {
        ("urgent", "first_response", 60, True),
        ("urgent", "next_response", 120, True),
        ("urgent", "resolution", 480, True),
        ("high", "first_response", 90, True),
        ("high", "next_response", 90, True),
        ("high", "resolution", 2880, False),
    }
    assert len(recomputes) == 1


def test_the_grid_shows_saved_targets_and_blanking_a_cell_removes_its_target(
    admin_web, post, recomputes
):
    policy = SlaPolicy.objects.create(name="Standard", is_default=True)
    SlaTarget.objects.create(policy=policy, priority="urgent", metric="first_response", minutes=60)
    SlaTarget.objects.create(policy=policy, priority="urgent", metric="resolution", minutes=2880,
                             business_time=False)  # fmt: skip

    page = admin_web.get(f"{POLICIES}{policy.pk}/change/")
    form = page.context["adminform"].form
    assert form["target_urgent_first_response"].value() == "1h"
    assert 'value="1h"' in page.content.decode()
    assert 'value="2d"' in page.content.decode()
    assert form["target_urgent_resolution_business"].value() is False

    data = policy_data(targets={"urgent": ("45m", "", "")}, is_default="on")
    response = post(admin_web, f"{POLICIES}{policy.pk}/change/", data)

    assert response.status_code == 302, errors_of(response)
    assert targets_of(policy) == {("urgent", "first_response", 45, True)}
    assert len(recomputes) == 1


def test_a_new_default_policy_gives_open_cases_deadlines(admin_web, post, eager_celery):
    make_calendar(default=True)
    case = CaseFactory(team=TeamFactory(), priority="urgent")
    assert case.sla_first_response_due is None

    data = policy_data(targets={"urgent": ("1h", "2h", "8h")}, is_default="on")

    response = post(admin_web, f"{POLICIES}add/", data)

    assert response.status_code == 302, errors_of(response)
    case.refresh_from_db()
    assert case.sla_policy == SlaPolicy.objects.get()
    assert case.sla_first_response_due is not None
    assert case.sla_first_response_state in ("on_track", "at_risk", "breached")


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"targets": {}}, None, "Give at least one target"),
        ({"targets": {"urgent": ("soon", "", "")}}, "target_urgent_first_response",
         "“soon” is not a duration"),
        ({"targets": {"urgent": ("3x", "", "")}}, "target_urgent_first_response",
         "Unknown unit “x”"),
        ({"targets": {"low": ("0m", "", "")}}, "target_low_first_response",
         "at least one minute"),
        ({"targets": {"low": ("", "", "400d")}}, "target_low_resolution", "at most 366 days"),
        ({"at_risk_percent": "0"}, "at_risk_percent", "greater than or equal to 1"),
        ({"at_risk_percent": "100"}, "at_risk_percent", "less than or equal to 99"),
        ({"is_default": "on", "priorities": ["urgent"], "channels": ["email"]}, "is_default",
         "The default policy is the catch-all and has no conditions; clear priorities, "
         "channels or untick default."),
        ({"is_default": "on", "active": ""}, "active", "The default policy must be active"),
    ],
)  # fmt: skip
def test_bad_policies_are_form_errors_and_nothing_is_saved(
    admin_web, post, recomputes, fields, field, message
):
    data = policy_data(**{"targets": {"urgent": ("1h", "", "")}, **fields})
    if data.get("active") == "":
        del data["active"]

    response = post(admin_web, f"{POLICIES}add/", data)

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors.get(field or "__all__", [])
    assert any(message in error for error in errors), response.context["adminform"].form.errors
    assert not SlaPolicy.objects.exists()
    assert not SlaTarget.objects.exists()
    assert recomputes == []


def test_a_default_with_a_team_condition_is_refused(admin_web, post):
    team = TeamFactory(name="Billing")
    data = policy_data(targets={"urgent": ("1h", "", "")}, is_default="on", teams=[team.pk])

    response = post(admin_web, f"{POLICIES}add/", data)

    assert "clear teams or untick default" in response.context["adminform"].form.errors[
        "is_default"][0]  # fmt: skip


def test_there_is_only_one_default_policy(admin_web, post):
    SlaPolicy.objects.create(name="Catch-all", is_default=True)

    response = post(admin_web, f"{POLICIES}add/",
                    policy_data(targets={"urgent": ("1h", "", "")}, is_default="on"))  # fmt: skip

    assert response.status_code == 200
    assert "Another policy is the default already." in str(
        response.context["adminform"].form.errors
    )
    assert SlaPolicy.objects.count() == 1


def test_the_order_is_edited_on_the_list_which_shows_conditions_targets_and_open_cases(
    admin_web, post, recomputes
):
    team = TeamFactory(name="Billing")
    first = SlaPolicy.objects.create(name="Billing urgent", order=10, priorities=["urgent"])
    first.teams.add(team)
    SlaTarget.objects.create(policy=first, priority="urgent", metric="first_response", minutes=60)
    SlaTarget.objects.create(policy=first, priority="urgent", metric="resolution", minutes=1440,
                             business_time=False)  # fmt: skip
    second = SlaPolicy.objects.create(name="Standard", order=20, is_default=True)
    open_case, closed_case = CaseFactory(team=team), CaseFactory(team=team)
    Case.objects.filter(pk__in=[open_case.pk, closed_case.pk]).update(sla_policy=first)
    Case.objects.filter(pk=closed_case.pk).update(status="closed")

    page = admin_web.get(POLICIES)

    html = page.content.decode()
    assert "priorities: Urgent; teams: Billing" in html
    assert "urgent 1h/—/1d cal" in html
    assert "catch-all" in html
    assert f"sla_policy__id__exact={first.pk}" in html
    assert [row.open_case_total for row in page.context["cl"].result_list] == [1, 0]
    assert "SLA report" in html

    response = post(admin_web, POLICIES, {
        **management("form", 2, initial=2),
        "form-0-id": str(first.pk), "form-0-order": "30",
        "form-1-id": str(second.pk), "form-1-order": "20",
        "_save": "Save",
    })  # fmt: skip

    assert response.status_code == 302
    first.refresh_from_db()
    assert first.order == 30
    assert targets_of(first)  # the list's order-only form leaves the targets alone
    assert recomputes


def test_deleting_a_policy_queues_the_recompute(admin_web, post, recomputes):
    policy = SlaPolicy.objects.create(name="Old")

    response = post(admin_web, f"{POLICIES}{policy.pk}/delete/", {"post": "yes"})

    assert response.status_code == 302
    assert not SlaPolicy.objects.exists()
    assert len(recomputes) == 1


def test_a_calendar_that_policies_use_cannot_be_deleted(admin_web, post, recomputes):
    calendar = make_calendar()
    SlaPolicy.objects.create(name="Regional", calendar=calendar)

    response = post(admin_web, f"{CALENDARS}{calendar.pk}/delete/", {"post": "yes"})

    assert response.status_code == 200
    assert "Cannot delete" in response.content.decode()
    assert BusinessCalendar.objects.filter(pk=calendar.pk).exists()
    assert recomputes == []


# --- who may ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [CALENDARS, f"{CALENDARS}add/", POLICIES, f"{POLICIES}add/"],
)
def test_leads_cannot_configure_slas(url):
    lead = make_agent(team=TeamFactory(), role="lead")
    client = Client()
    client.force_login(lead)

    assert client.get(url).status_code == 403


def test_leads_cannot_post_a_policy_either(post):
    lead = make_agent(team=TeamFactory(), role="lead")
    client = Client()
    client.force_login(lead)

    response = post(client, f"{POLICIES}add/", policy_data(targets={"urgent": ("1h", "", "")}))

    assert response.status_code == 403
    assert not SlaPolicy.objects.exists()


def test_the_holiday_inline_shows_last_year_on_and_saving_keeps_older_days(admin_web, post):
    calendar = make_calendar()
    this_year = timezone.localdate().year
    old = Holiday.objects.create(calendar=calendar, date=date(this_year - 3, 1, 1), name="Old")
    recent = Holiday.objects.create(calendar=calendar, date=date(this_year - 1, 5, 1), name="Mai")

    page = admin_web.get(f"{CALENDARS}{calendar.pk}/change/")
    holidays = next(i.formset for i in page.context["inline_admin_formsets"]
                    if i.formset.prefix == "holidays")  # fmt: skip
    assert [form.instance for form in holidays.initial_forms] == [recent]

    data = existing_calendar_data(calendar, name="Office (DE)")
    data |= management("holidays", 1, initial=1)
    data |= {
        "holidays-0-id": str(recent.pk),
        "holidays-0-calendar": str(calendar.pk),
        "holidays-0-date": recent.date.isoformat(),
        "holidays-0-name": "Maifeiertag",
    }
    response = post(admin_web, f"{CALENDARS}{calendar.pk}/change/", data)

    assert response.status_code == 302, errors_of(response)
    assert dict(calendar.holidays.values_list("name", "date")) == {
        "Old": old.date,
        "Maifeiertag": recent.date,
    }
