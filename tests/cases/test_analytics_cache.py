"""Cached analytics (cases.analytics_cache): a figure is computed once and served from the
cache until a change to a case its viewer may see moves a change number on."""

from __future__ import annotations

from datetime import time, timedelta

import pytest
from django.core.cache import cache
from django.db import transaction

from cases import services
from cases.analytics_cache import analytics_cached, analytics_scope, analytics_wait
from cases.models import BusinessCalendar, BusinessHours, SlaPolicy, SlaTarget
from cases.services.sla import sla_config_changed, sla_tick
from crm.choices import Role
from crm.models import TeamMembership, User
from tests.cases.factories import CaseFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db(transaction=True)


class Figure:
    """A stand-in for an expensive aggregate that counts how often it really ran."""

    def __init__(self) -> None:
        self.runs = 0

    def __call__(self) -> dict[str, int]:
        self.runs += 1
        return {"run": self.runs}

    def read(self, user, **params) -> dict[str, int]:
        return analytics_cached("figure", user=user, params=params, compute=self)


@pytest.fixture
def alpha():
    return TeamFactory(name="Alpha")


@pytest.fixture
def bravo():
    return TeamFactory(name="Bravo")


def test_a_figure_is_computed_once_while_nothing_changes(alpha):
    ada = make_agent(team=alpha)
    figure = Figure()
    assert figure.read(ada, days=30) == {"run": 1}
    assert figure.read(ada, days=30) == {"run": 1}
    assert figure.read(ada, days=7) == {"run": 2}, "other parameters are another figure"
    assert figure.runs == 2


def test_a_change_to_a_case_of_my_team_recomputes_it(alpha):
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()
    figure.read(ada)
    services.case_update(actor=ada, case=case, priority="high")
    assert figure.read(ada) == {"run": 2}


def test_a_change_in_another_team_leaves_my_figure_cached_but_not_the_admins(alpha, bravo):
    ada = make_agent(team=alpha)
    admin = make_agent(role=Role.ADMIN)
    elsewhere = CaseFactory(team=bravo)
    mine, everything = Figure(), Figure()
    mine.read(ada)
    everything.read(admin)
    services.case_update(actor=admin, case=elsewhere, priority="high")
    assert mine.read(ada) == {"run": 1}
    assert everything.read(admin) == {"run": 2}


def test_a_case_assigned_to_me_in_another_team_counts_as_mine(alpha, bravo):
    ada = make_agent(team=alpha)
    make_agent(team=bravo, email=ada.email)
    bob = make_agent(team=bravo)
    case = CaseFactory(team=bravo, assignee=ada)
    TeamMembership.objects.filter(user=ada, team=bravo).delete()  # still her case
    figure = Figure()
    figure.read(ada)
    services.case_update(actor=bob, case=case, priority="urgent")
    assert figure.read(ada) == {"run": 2}


def test_moving_a_case_away_from_my_team_recomputes_it(alpha, bravo):
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()
    figure.read(ada)
    services.case_assign(actor=ada, case=case, team=bravo, assignee=None)
    assert figure.read(ada) == {"run": 2}


def test_a_rolled_back_change_moves_nothing(alpha):
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()
    figure.read(ada)
    with transaction.atomic():
        services.case_update(actor=ada, case=case, priority="high")
        transaction.set_rollback(True)
    assert figure.read(ada) == {"run": 1}


def test_a_lost_counter_never_serves_an_old_entry(alpha):
    ada = make_agent(team=alpha)
    figure = Figure()
    figure.read(ada)
    cache.delete_many([f"analytics:n:{name}" for name in analytics_scope(ada)])
    assert figure.read(ada) == {"run": 2}


def test_joining_a_team_is_another_scope(alpha, bravo):
    ada = make_agent(team=alpha)
    figure = Figure()
    figure.read(ada)
    make_agent(team=bravo, email=ada.email)  # the same agent, now in Bravo as well
    next_request = User.objects.get(pk=ada.pk)
    assert figure.read(next_request) == {"run": 2}


@pytest.mark.django_db
def test_each_committed_change_moves_the_counters_on(alpha, django_capture_on_commit_callbacks):
    ada = make_agent(team=alpha)
    with django_capture_on_commit_callbacks(execute=True):
        case = CaseFactory(team=alpha)
    figure = Figure()
    for run, priority in enumerate(("high", "urgent", "low"), start=1):
        assert figure.read(ada) == {"run": run}
        with django_capture_on_commit_callbacks(execute=True):
            services.case_update(actor=ada, case=case, priority=priority)


def test_the_sla_tick_moving_a_target_to_breached_recomputes_it(alpha):
    calendar = BusinessCalendar.objects.create(name="Always", timezone="UTC", is_default=True)
    for weekday in range(7):
        BusinessHours.objects.create(calendar=calendar, weekday=weekday, start=time(0),
                                     end=time(23, 59))  # fmt: skip
    policy = SlaPolicy.objects.create(name="Fast", is_default=True)
    SlaTarget.objects.create(policy=policy, priority="normal", metric="first_response", minutes=30)
    sla_config_changed()
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()
    figure.read(ada)

    result = sla_tick(now=case.created_at + timedelta(hours=2))

    assert result.breached == 1
    assert figure.read(ada) == {"run": 2}


def test_in_production_a_moved_figure_is_served_as_it_was_while_a_thread_recomputes_it(
    alpha, settings
):
    settings.ANALYTICS_REFRESH_IN_BACKGROUND = True
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()
    assert figure.read(ada) == {"run": 1}, "with no figure yet the page computes it"
    services.case_update(actor=ada, case=case, priority="high")

    assert figure.read(ada) == {"run": 1}, "the figure as it was, at once"
    assert figure.read(ada) == {"run": 1}, "one recomputation at a time"
    analytics_wait()

    assert figure.runs == 2
    assert figure.read(ada) == {"run": 2}
    assert figure.runs == 2, "fresh again: served from the cache"


def test_a_failing_background_recomputation_keeps_the_old_figure(alpha, settings):
    settings.ANALYTICS_REFRESH_IN_BACKGROUND = True
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    analytics_cached("broken", user=ada, params={}, compute=lambda: "old")
    services.case_update(actor=ada, case=case, priority="high")

    def fail() -> str:
        raise RuntimeError("database went away")

    assert analytics_cached("broken", user=ada, params={}, compute=fail) == "old"
    analytics_wait()
    assert analytics_cached("broken", user=ada, params={}, compute=lambda: "new") == "old"
    analytics_wait()
    assert analytics_cached("broken", user=ada, params={}, compute=lambda: "x") == "new"


def test_a_figure_older_than_the_maximum_age_is_recomputed_without_any_change(alpha, settings):
    ada = make_agent(team=alpha)
    figure = Figure()
    figure.read(ada)
    settings.ANALYTICS_MAX_AGE_SECONDS = 0  # a write that bypassed the services, an hour ago
    assert figure.read(ada) == {"run": 2}


def test_a_figure_that_must_not_be_stale_is_recomputed_while_the_page_waits(alpha, settings):
    settings.ANALYTICS_REFRESH_IN_BACKGROUND = True
    ada = make_agent(team=alpha)
    case = CaseFactory(team=alpha)
    figure = Figure()

    def read() -> dict[str, int]:
        return analytics_cached("now", user=ada, params={}, compute=figure, background=False)

    assert read() == {"run": 1}
    services.case_update(actor=ada, case=case, priority="high")
    assert read() == {"run": 2}
