"""Bulk benchmark data obeys the rules the services enforce."""

import pytest
from django.db.models import Count, F
from django.db.models.functions import Coalesce

from cases.bulkdata import generate_cases
from cases.choices import CaseStatus, SlaState
from cases.models import Case, SlaPolicy
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db


def test_generated_cases_are_numbered_consistent_and_searchable():
    team = TeamFactory()
    make_agent(team=team)
    CustomerFactory()
    existing = CaseFactory(team=team)

    written = generate_cases(300, batch=120)

    assert written == 300
    cases = Case.objects.exclude(pk=existing.pk)
    assert cases.count() == 300
    assert all(c.number == f"CASE-{c.pk:06d}" for c in cases)
    assert not cases.filter(status=CaseStatus.CLOSED, closed_at__isnull=True).exists()
    assert not cases.filter(status=CaseStatus.RESOLVED, resolved_at__isnull=True).exists()
    assert not cases.filter(resolved_at__lt=F("created_at")).exists()
    assert cases.annotate(n=Count("timeline")).filter(n=0).count() == 0
    assert cases.filter(search_vector__isnull=False).count() == 300
    assert {c.status for c in cases} <= set(CaseStatus.values)
    assert cases.filter(status__in=["resolved", "closed"]).count() > 0.8 * 300
    follow_up = CaseFactory(team=team)
    assert follow_up.number == f"CASE-{follow_up.pk:06d}"
    assert follow_up.pk > max(c.pk for c in cases)


def test_generated_cases_carry_the_sla_columns_the_clock_would_have_left():
    team = TeamFactory()
    make_agent(team=team)
    CustomerFactory()
    policy = SlaPolicy.objects.create(name="Standard", is_default=True)

    generate_cases(200)

    cases = Case.objects.all()
    assert cases.filter(sla_policy=policy).count() == 200
    done = Coalesce("first_response_at", "resolved_at")
    met = cases.filter(sla_first_response_state=SlaState.MET)
    assert met.exists()
    assert not met.annotate(done=done).filter(done__gt=F("sla_first_response_due")).exists()
    late = cases.filter(sla_first_response_state=SlaState.BREACHED)
    assert late.exists()
    assert not late.annotate(done=done).filter(done__lte=F("sla_first_response_due")).exists()
    running = cases.filter(sla_resolution_state__in=[SlaState.ON_TRACK, SlaState.AT_RISK])
    assert not running.filter(resolved_at__isnull=False).exists()
    assert not running.filter(sla_due__isnull=True).exists()
    assert (
        not cases.exclude(sla_first_response_state__in=[SlaState.ON_TRACK, SlaState.AT_RISK])
        .exclude(sla_resolution_state__in=[SlaState.ON_TRACK, SlaState.AT_RISK])
        .filter(sla_due__isnull=False)
        .exists()
    ), "sla_due is the nearest deadline of a running target"


def test_without_teams_and_customers_it_says_what_to_do_first():
    with pytest.raises(ValueError, match="Seed teams, agents and customers first"):
        generate_cases(10)


def test_seed_demo_with_cases_adds_bulk_cases_after_the_demo_data(capsys):
    from django.core.management import call_command

    call_command("seed_demo", "--cases", "250")

    out = capsys.readouterr().out
    assert "Bulk data: 250 cases in" in out
    assert Case.objects.count() == 150 + 250
