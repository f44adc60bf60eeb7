"""Status periods of the cases that exist already, from their timeline (status changes record
the old and the new status), so SLA pauses can be derived for them too."""

from django.db import migrations

CHUNK = 2000


def build_periods(apps, schema_editor):
    Case = apps.get_model("cases", "Case")
    TimelineEvent = apps.get_model("cases", "TimelineEvent")
    CaseStatusPeriod = apps.get_model("cases", "CaseStatusPeriod")
    cases = Case.objects.order_by("pk").values_list("pk", "status", "created_at")
    last = 0
    while True:
        chunk = list(cases.filter(pk__gt=last)[:CHUNK])
        if not chunk:
            return
        last = chunk[-1][0]
        changes: dict[int, list] = {}
        events = TimelineEvent.objects.filter(
            case_id__in=[pk for pk, _, _ in chunk], kind="status_changed"
        ).order_by("case_id", "created_at", "pk")
        for case_id, data, at in events.values_list("case_id", "data", "created_at"):
            changes.setdefault(case_id, []).append((data or {}, at))
        periods = []
        for pk, status, created_at in chunk:
            periods += _periods(CaseStatusPeriod, pk, status, created_at, changes.get(pk, []))
        CaseStatusPeriod.objects.bulk_create(periods)


def _periods(model, case_id, status, created_at, changes):
    periods = []
    current = changes[0][0].get("old", status) if changes else status
    since = created_at
    for data, at in changes:
        periods.append(model(case_id=case_id, status=current, started_at=since, ended_at=at))
        current, since = data.get("new", current), at
    periods.append(model(case_id=case_id, status=status, started_at=since, ended_at=None))
    return periods


class Migration(migrations.Migration):
    dependencies = [("cases", "0012_sla")]

    operations = [migrations.RunPython(build_periods, migrations.RunPython.noop)]
