"""Holidays from iCalendar files and URLs, for business calendars.

What counts as a holiday (each a deliberate choice; the tests hold them):

- **All-day events** (``DTSTART;VALUE=DATE``): every day from DTSTART up to the exclusive DTEND
  (or DURATION; one day when neither is given, or when DTEND repeats DTSTART as some producers
  write it).
- **Timed events that cover whole days** count as all-day: Outlook exports all-day events as
  local midnight-to-midnight times (often with ``X-MICROSOFT-CDO-ALLDAYEVENT:TRUE``).
- **Other timed events are skipped.** A holiday removes a whole day of business time; a two-hour
  company meeting in a holiday feed does not mean the support desk is closed all day.
- **Recurrence** (RRULE, RDATE, EXDATE, and RECURRENCE-ID overrides) is expanded over ``years``;
  without ``years``, one-off events are kept whatever their year and recurring ones are expanded
  from their start up to ``DEFAULT_FUTURE_YEARS`` after the current year (and at least over the
  year they start in).
- **Cancelled events** (``STATUS:CANCELLED``) are skipped; a cancelled override removes its
  occurrence.
- Two events on one day give one holiday whose name joins both.

Bad input never yields a partial list: anything that is not iCalendar, a calendar without
events or without any whole-day event, a date that does not parse or a rule that cannot be
expanded raises ``HolidayFileError`` with a message an admin form can show as it is.
"""

from __future__ import annotations

import time as monotonic_clock
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from typing import NamedTuple
from urllib.parse import urlsplit, urlunsplit

import requests
from dateutil.rrule import rruleset, rrulestr
from icalendar import Calendar, Component

MAX_ICS_BYTES = 2 * 1024 * 1024
MAX_HOLIDAYS = 5_000
MAX_EVENT_DAYS = 366
DEFAULT_FUTURE_YEARS = 2
DEFAULT_TIMEOUT = 10.0
_DATE_PROPERTIES = ("DTSTART", "DTEND", "DURATION", "RRULE", "RDATE", "EXDATE", "RECURRENCE-ID")


class Holiday(NamedTuple):
    """One local day without business time, and what it is called."""

    date: date
    name: str


class HolidayFileError(ValueError):
    """A holiday file or URL that cannot be used; the message says why, for the admin."""


# --- parsing -------------------------------------------------------------------------------------


def _calendars(data: bytes) -> list[Component]:
    if not data or not data.strip():
        raise HolidayFileError("The holiday file is empty.")
    if len(data) > MAX_ICS_BYTES:
        raise HolidayFileError(
            f"The holiday file is larger than {MAX_ICS_BYTES // (1024 * 1024)} MB."
        )
    try:
        components = Calendar.from_ical(data, multiple=True)
    except Exception as error:  # noqa: BLE001 - icalendar raises several kinds on hostile bytes
        detail = str(error).split("\n")[0][:160]
        raise HolidayFileError(f"This is not an iCalendar (.ics) file: {detail}") from None
    if not components or any(c.name != "VCALENDAR" for c in components):
        raise HolidayFileError("This is not an iCalendar (.ics) file: no VCALENDAR found.")
    return components


def _name(event: Component) -> str:
    return str(event.get("SUMMARY", "")).strip() or "Holiday"


def _check(event: Component) -> None:
    """Refuse an event whose dates or rules icalendar could not read."""
    for prop, message in event.errors:
        if prop in _DATE_PROPERTIES:
            raise HolidayFileError(f"Event {_name(event)!r}: {prop} is not valid ({message}).")
    if "DTSTART" not in event:
        raise HolidayFileError(f"Event {_name(event)!r} has no start date (DTSTART).")


def _moment(event: Component, prop: str) -> date | None:
    """A DTSTART/DTEND value as a date or datetime (icalendar reads ``202602`` as a time)."""
    if prop not in event:
        return None
    value = event.decoded(prop)
    if not isinstance(value, date):
        raise HolidayFileError(f"Event {_name(event)!r}: {prop} is not a date.")
    return value


def _is_midnight(value: datetime) -> bool:
    return (value.hour, value.minute, value.second, value.microsecond) == (0, 0, 0, 0)


def _whole_days(event: Component) -> tuple[date, int] | None:
    """(first day, number of days) of an all-day event, or None for a timed event (skipped)."""
    start = _moment(event, "DTSTART")
    end = _moment(event, "DTEND")
    duration = event.decoded("DURATION") if "DURATION" in event else None
    if duration is not None and not isinstance(duration, timedelta):
        raise HolidayFileError(f"Event {_name(event)!r}: DURATION is not a duration.")
    if isinstance(start, datetime):
        if end is None and duration is not None:
            end = start + duration
        flagged = str(event.get("X-MICROSOFT-CDO-ALLDAYEVENT", "")).upper() == "TRUE"
        if not isinstance(end, datetime) or end <= start:
            return None
        if flagged or (_is_midnight(start) and _is_midnight(end)):
            last = end.date() if _is_midnight(end) else end.date() + timedelta(days=1)
            if (last - start.date()).days > MAX_EVENT_DAYS:
                raise HolidayFileError(
                    f"Event {_name(event)!r} lasts more than {MAX_EVENT_DAYS} days."
                )
            return start.date(), (last - start.date()).days
        return None
    if isinstance(end, datetime):
        end = end.date()
    if end is None and duration is not None:
        end = start + timedelta(days=duration.days)
    if end is not None and end < start:
        raise HolidayFileError(f"Event {_name(event)!r} ends before it starts.")
    days = (end - start).days if end is not None else 1
    if days > MAX_EVENT_DAYS:
        raise HolidayFileError(f"Event {_name(event)!r} lasts more than {MAX_EVENT_DAYS} days.")
    return start, max(days, 1)


def _status(event: Component) -> str:
    status = event.get("STATUS", "")
    return str(status[0] if isinstance(status, list) and status else status).upper()


def _dates_of(event: Component, prop: str) -> list[date]:
    """The days of an RDATE/EXDATE/RECURRENCE-ID value (one property or several)."""
    if prop not in event:
        return []
    days = []
    for item in event[prop] if isinstance(event[prop], list) else [event[prop]]:
        values = getattr(item, "dts", None)
        for value in values if values is not None else [item]:
            moment = getattr(value, "dt", value)
            if isinstance(moment, tuple) and moment:  # an RDATE period
                moment = moment[0]
            if not isinstance(moment, date):
                raise HolidayFileError(f"Event {_name(event)!r}: {prop} is not a date.")
            days.append(moment.date() if isinstance(moment, datetime) else moment)
    return days


def _window(years: range | None, first: date) -> tuple[datetime, datetime]:
    if years is not None:
        return datetime(years.start, 1, 1), datetime(years.stop, 1, 1)  # noqa: DTZ001
    last_year = max(datetime.now(tz=UTC).year + DEFAULT_FUTURE_YEARS, first.year)
    return (
        datetime(first.year, 1, 1),  # noqa: DTZ001 - dates, as naive midnights for dateutil
        datetime(last_year + 1, 1, 1),  # noqa: DTZ001
    )


def _occurrences(
    event: Component, first: date, length: int, years: range | None, moved: set[date]
) -> list[date]:
    """Start days of a recurring event's occurrences in the window, minus moved/cancelled ones."""
    start = datetime(first.year, first.month, first.day)  # noqa: DTZ001 - a day, not an instant
    rules = rruleset()
    for rule in event.get("RRULE") if isinstance(event.get("RRULE"), list) else [event["RRULE"]]:
        text = rule.to_ical().decode()
        try:
            rules.rrule(rrulestr(text, dtstart=start, ignoretz=True))
        except (ValueError, TypeError) as error:
            raise HolidayFileError(
                f"Event {_name(event)!r}: its repeat rule {text!r} cannot be read ({error})."
            ) from None
    for day in _dates_of(event, "RDATE"):
        rules.rdate(datetime(day.year, day.month, day.day))  # noqa: DTZ001
    for day in [*_dates_of(event, "EXDATE"), *moved]:
        rules.exdate(datetime(day.year, day.month, day.day))  # noqa: DTZ001
    low, high = _window(years, first)
    days = []
    for moment in rules.xafter(low - timedelta(days=length), inc=True):
        if moment >= high:
            break
        days.append(moment.date())
        if len(days) > MAX_HOLIDAYS:
            raise HolidayFileError(
                f"Event {_name(event)!r} repeats more than {MAX_HOLIDAYS} times; "
                "is it really a holiday?"
            )
    return days


def _overrides(events: list[Component]) -> dict[str, set[date]]:
    """Per UID, the occurrence days that RECURRENCE-ID events replace or cancel."""
    moved: dict[str, set[date]] = defaultdict(set)
    for event in events:
        moved[str(event.get("UID", ""))].update(_dates_of(event, "RECURRENCE-ID"))
    return moved


def _event_days(event: Component, years: range | None, moved: set[date]) -> list[date] | None:
    """Every holiday day of one event (recurrences expanded), or None for a timed event."""
    span = _whole_days(event)
    if span is None:
        return None
    first, length = span
    starts = [first]
    if "RRULE" in event and "RECURRENCE-ID" not in event:
        starts = _occurrences(event, first, length, years, moved)
    return [start + timedelta(days=offset) for start in starts for offset in range(length)]


def _read_event(event: Component, years: range | None, moved: set[date]) -> list[date] | None:
    """``_event_days`` with icalendar's and dateutil's surprises on odd values named as ours."""
    try:
        return _event_days(event, years, moved)
    except HolidayFileError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError, OverflowError) as error:
        raise HolidayFileError(
            f"Event {_name(event)!r} cannot be read ({type(error).__name__}: {error})."
        ) from None


def parse_ics(data: bytes, *, years: range | None = None) -> list[Holiday]:
    """The holidays of an iCalendar file, sorted by date, one per day.

    With ``years``, only days in those years (``range(2026, 2028)`` = 2026 and 2027); an empty
    list then means the file is fine but has nothing for those years.
    """
    events = [event for cal in _calendars(data) for event in cal.walk("VEVENT")]
    if not events:
        raise HolidayFileError("The file has no events (VEVENT), so no holidays.")
    for event in events:
        _check(event)
    moved = _overrides(events)
    names: dict[date, list[str]] = defaultdict(list)
    whole_day_events = 0
    for event in events:
        if _status(event) == "CANCELLED":
            continue
        days = _read_event(event, years, moved.get(str(event.get("UID", "")), set()))
        if days is None:
            continue
        whole_day_events += 1
        name = _name(event)
        for day in days:
            if (years is None or day.year in years) and name not in names[day]:
                names[day].append(name)
        if len(names) > MAX_HOLIDAYS:
            raise HolidayFileError(f"The file has more than {MAX_HOLIDAYS} holidays.")
    if not whole_day_events:
        raise HolidayFileError(
            "The file has no all-day events; holidays are whole days (timed events are skipped)."
        )
    return [Holiday(day, " / ".join(names[day])) for day in sorted(names)]


# --- fetching ------------------------------------------------------------------------------------


def _checked_url(url: str) -> str:
    """Only web addresses: no file://, ftp:// or other schemes (webcal:// is https://)."""
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise HolidayFileError(f"{url!r} is not a valid address.") from None
    scheme = parts.scheme.lower()
    if scheme == "webcal":
        parts, scheme = parts._replace(scheme="https"), "https"
    if scheme not in ("http", "https") or not parts.hostname:
        raise HolidayFileError("Holiday calendars can only be fetched from http:// or https://.")
    return urlunsplit(parts)


def _body(response: requests.Response, url: str, timeout: float, max_bytes: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise HolidayFileError(f"{url} is larger than {max_bytes // 1024} KB.")
    deadline = monotonic_clock.monotonic() + timeout
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(chunk_size=65_536):
            size += len(chunk)
            if size > max_bytes:
                raise HolidayFileError(f"{url} is larger than {max_bytes // 1024} KB.")
            if monotonic_clock.monotonic() > deadline:
                raise HolidayFileError(f"{url} took longer than {timeout:g} s to download.")
            chunks.append(chunk)
    except requests.ConnectionError as error:  # how requests reports a read timeout mid-body
        if "timed out" in str(error).lower():
            raise HolidayFileError(f"{url} stopped sending for {timeout:g} s.") from None
        raise HolidayFileError(f"The connection to {url} broke off.") from None
    return b"".join(chunks)


def fetch_ics(
    url: str, *, timeout: float = DEFAULT_TIMEOUT, max_bytes: int = MAX_ICS_BYTES
) -> bytes:
    """The bytes of a holiday calendar on the web, for ``parse_ics``.

    Bounded in time (``timeout`` for connecting, each read and the whole download) and size;
    every failure is a ``HolidayFileError`` that names the address and the reason. Only http(s)
    is fetched, redirects included (requests has no file:// adapter); private addresses are
    not blocked, since an admin enters the URL.
    """
    address = _checked_url(url)
    try:
        with requests.get(
            address,
            stream=True,
            timeout=timeout,
            headers={"Accept": "text/calendar, */*;q=0.1"},
        ) as response:
            if response.status_code != 200:
                raise HolidayFileError(f"{address} answered HTTP {response.status_code}.")
            return _body(response, address, timeout, max_bytes)
    except requests.Timeout:
        raise HolidayFileError(f"{address} did not answer within {timeout:g} s.") from None
    except requests.ConnectionError as error:
        reason = "was refused" if "refused" in str(error).lower() else "failed"
        raise HolidayFileError(f"Connecting to {address} {reason}.") from None
    except requests.RequestException as error:
        raise HolidayFileError(f"Could not fetch {address}: {error}") from None
