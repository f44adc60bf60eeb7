"""Search: full text with ranking and fuzzy matching on PostgreSQL, a plain fallback elsewhere."""

import pytest

from cases import selectors
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
)

pytestmark = pytest.mark.django_db


def titles(response) -> list[str]:
    return [c["title"] for c in response.json()["results"]]


def test_full_text_finds_word_forms_and_ranks_title_above_description(api, team):
    CaseFactory(team=team, title="Question about shipping", description="The invoices are wrong")
    CaseFactory(team=team, title="Invoice shows wrong VAT", description="See attachment")
    CaseFactory(team=team, title="Password reset")

    response = api.get("/api/v1/cases/search", {"q": "invoice"})

    assert titles(response) == ["Invoice shows wrong VAT", "Question about shipping"]


def test_websearch_syntax_phrases_and_exclusions(api, team):
    CaseFactory(team=team, title="Printer jams on tray two")
    CaseFactory(team=team, title="Printer toner empty")

    assert titles(api.get("/api/v1/cases/search", {"q": '"printer jams"'})) == [
        "Printer jams on tray two"
    ]
    assert titles(api.get("/api/v1/cases/search", {"q": "printer -toner"})) == [
        "Printer jams on tray two"
    ]


def test_misspellings_still_find_the_case(api, team):
    CaseFactory(team=team, title="Synchronisation fails on iPhone")

    assert titles(api.get("/api/v1/cases/search", {"q": "Synchronsation fails"})) == [
        "Synchronisation fails on iPhone"
    ]


def test_case_number_and_customer_find_the_case(api, team):
    customer = CustomerFactory(name="Margaret Hamilton", emails=["margaret@apollo.example"])
    case = CaseFactory(team=team, title="Guidance question", customer=customer)

    for query in (case.number, case.number.lower(), "Margret Hamilton", "apollo.example"):
        assert titles(api.get("/api/v1/cases/search", {"q": query})) == ["Guidance question"], query


def test_search_never_shows_other_teams_cases(api):
    CaseFactory(team=TeamFactory(), title="Confidential merger")

    assert titles(api.get("/api/v1/cases/search", {"q": "merger"})) == []


def test_search_combines_with_filters(api, team):
    CaseFactory(team=team, title="Refund request", priority="urgent")
    CaseFactory(team=team, title="Refund question", priority="low")

    response = api.get("/api/v1/cases/search", {"q": "refund", "priority": "urgent"})

    assert titles(response) == ["Refund request"]


def test_tasks_and_customers_are_searchable(api, team, agent):
    TaskFactory(case=CaseFactory(team=team), subject="Escalate to vendor", assignee=agent)
    OrganizationFactory(name="Initech", domains=["initech.example"])
    CustomerFactory(name="Peter Gibbons", emails=["peter@initech.example"])

    tasks = api.get("/api/v1/tasks/search", {"q": "escalating vendor"}).json()["results"]
    by_name = api.get("/api/v1/customers", {"q": "Peter Gibons"}).json()["results"]
    by_org = api.get("/api/v1/customers", {"q": "Initech"}).json()["results"]

    assert [t["subject"] for t in tasks] == ["Escalate to vendor"]
    assert [c["name"] for c in by_name] == ["Peter Gibbons"]
    assert [c["name"] for c in by_org] == ["Peter Gibbons"]


def test_the_fallback_used_on_sqlite_matches_every_word(monkeypatch, agent, team):
    CaseFactory(team=team, title="Invoice shows wrong VAT")
    CaseFactory(team=team, title="Invoice copy")
    monkeypatch.setattr(selectors, "is_postgresql", lambda: False)

    found = selectors.case_search(user=agent, query="invoice vat")

    assert [c.title for c in found] == ["Invoice shows wrong VAT"]
