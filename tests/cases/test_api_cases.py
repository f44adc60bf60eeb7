"""/api/v1/cases through HTTP, as an integration would use it."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from cases import services
from cases.models import Case
from tests.cases.factories import CaseFactory, CustomerFactory, TaskFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db


def test_create_read_update_a_case_with_a_timeline(api, team, agent):
    customer = CustomerFactory(name="Ada", emails=["ada@acme.example"])

    created = api.post(
        "/api/v1/cases",
        {"title": "VAT wrong", "team": team.pk, "customer": customer.pk, "tags": ["vat"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["number"].startswith("CASE-")
    assert body["status"] == "new"
    assert body["team_summary"] == {"id": team.pk, "name": "Billing"}
    assert body["customer_summary"]["email"] == "ada@acme.example"
    assert body["tags"] == ["vat"]

    updated = api.patch(
        f"/api/v1/cases/{body['id']}",
        {"priority": "high", "assignee": agent.pk, "status": "in_progress"},
        format="json",
    )
    assert updated.status_code == 200, updated.json()
    assert updated.json()["assignee_summary"]["email"] == agent.email
    timeline = api.get(f"/api/v1/cases/{body['id']}/timeline").json()["results"]
    assert [e["kind"] for e in timeline] == [
        "created",
        "tags_changed",
        "field_changed",
        "assigned",
        "status_changed",
    ]


def test_status_endpoint_enforces_transitions_with_a_clear_400(api, team):
    case = CaseFactory(team=team)
    services.case_change_status(actor=None, case=case, status="resolved")

    response = api.patch(
        f"/api/v1/cases/{case.pk}/status", {"status": "awaiting_customer"}, format="json"
    )

    assert response.status_code == 400
    assert response.json() == {
        "status": ["A resolved case cannot become awaiting customer."],
        "code": "invalid_transition",
    }
    bad = api.patch(f"/api/v1/cases/{case.pk}/status", {"status": "done"}, format="json")
    assert bad.status_code == 400
    assert "status" in bad.json()


def test_assign_directly_or_round_robin(api, team, agent):
    other = make_agent(team=team)
    case = CaseFactory(team=team)

    direct = api.patch(f"/api/v1/cases/{case.pk}/assign", {"assignee": other.pk}, format="json")
    rr = api.patch(
        f"/api/v1/cases/{CaseFactory(team=team).pk}/assign", {"round_robin": True}, format="json"
    )

    assert direct.json()["assignee"] == other.pk
    assert rr.status_code == 200
    assert rr.json()["assignee"] in {agent.pk, other.pk}
    outsider = make_agent(team=TeamFactory())
    refused = api.patch(f"/api/v1/cases/{case.pk}/assign", {"assignee": outsider.pk}, format="json")
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_assignee"


def test_number_lookup_follows_merges(api, team):
    source, target = CaseFactory(team=team), CaseFactory(team=team)

    merged = api.post(f"/api/v1/cases/{source.pk}/merge", {"target": target.pk}, format="json")
    found = api.get(f"/api/v1/cases/number/{source.number.lower()}")

    assert merged.status_code == 200
    assert found.json()["id"] == target.pk
    again = api.post(f"/api/v1/cases/{source.pk}/merge", {"target": target.pk}, format="json")
    assert again.status_code == 400
    assert again.json()["code"] == "invalid_merge"
    assert api.get("/api/v1/cases/number/CASE-999999").status_code == 404


def test_tasks_notes_and_links_of_a_case(api, team, agent):
    case, other = CaseFactory(team=team), CaseFactory(team=team)

    task = api.post(
        f"/api/v1/cases/{case.pk}/tasks",
        {"subject": "Refund", "assignee": agent.pk, "checklist": [{"text": "Check"}]},
        format="json",
    )
    note = api.post(f"/api/v1/cases/{case.pk}/notes", {"body": "Spoke to finance"}, format="json")
    link = api.post(
        f"/api/v1/cases/{case.pk}/links", {"other": other.pk, "kind": "related"}, format="json"
    )

    assert task.status_code == 201, task.json()
    assert task.json()["case"] == case.pk
    assert task.json()["checklist"] == [{"text": "Check", "done": False}]
    assert note.status_code == 201
    assert link.status_code == 201
    assert [t["subject"] for t in api.get(f"/api/v1/cases/{case.pk}/tasks").json()["results"]] == [
        "Refund"
    ]
    assert (
        api.get(f"/api/v1/cases/{case.pk}/notes").json()["results"][0]["body"] == "Spoke to finance"
    )
    assert len(api.get(f"/api/v1/cases/{other.pk}/links").json()) == 1
    unlinked = api.delete(f"/api/v1/cases/{case.pk}/links", {"other": other.pk}, format="json")
    assert unlinked.status_code == 204


def test_search_and_stats(api, team):
    CaseFactory(team=team, title="Printer on fire", priority="urgent")
    CaseFactory(team=team, title="Invoice copy")

    found = api.get("/api/v1/cases/search", {"q": "printer"}).json()["results"]
    stats = api.get("/api/v1/cases/stats").json()

    assert [c["title"] for c in found] == ["Printer on fire"]
    assert stats["total"] == 2
    assert stats["open"] == 2
    assert stats["by_priority"] == {"normal": 1, "urgent": 1}
    assert api.get("/api/v1/cases/search").status_code == 400


def test_bulk_status_reports_each_item_and_atomic_rolls_all_back(api, team):
    fine, closed = CaseFactory(team=team), CaseFactory(team=team)
    services.case_change_status(actor=None, case=closed, status="resolved")
    invisible = CaseFactory(team=TeamFactory())
    ids = [fine.pk, closed.pk, invisible.pk]

    per_item = api.patch(
        "/api/v1/cases/bulk/status", {"ids": ids, "status": "awaiting_customer"}, format="json"
    )

    assert per_item.status_code == 200
    results = {r["id"]: r for r in per_item.json()["results"]}
    assert results[fine.pk]["ok"] is True
    assert results[closed.pk]["error"]["code"] == "invalid_transition"
    assert results[invisible.pk]["error"]["code"] == "not_found"

    other = CaseFactory(team=team)
    atomic = api.patch(
        "/api/v1/cases/bulk/status",
        {"ids": [other.pk, closed.pk], "status": "awaiting_vendor", "atomic": True},
        format="json",
    )
    assert atomic.status_code == 400
    assert atomic.json()["results"][0]["error"]["code"] == "rolled_back"
    other.refresh_from_db()
    assert other.status == "new"


def test_bulk_assign(api, team, agent):
    cases = [CaseFactory(team=team) for _ in range(3)]

    response = api.patch(
        "/api/v1/cases/bulk/assign",
        {"ids": [c.pk for c in cases], "assignee": agent.pk},
        format="json",
    )

    assert all(r["ok"] for r in response.json()["results"])
    assert set(Case.objects.values_list("assignee", flat=True)) == {agent.pk}


def test_another_teams_cases_do_not_exist_for_an_agent(api):
    hidden = CaseFactory(team=TeamFactory(name="Secret"))
    TaskFactory(case=hidden)

    assert api.get(f"/api/v1/cases/{hidden.pk}").status_code == 404
    assert api.patch(f"/api/v1/cases/{hidden.pk}", {"title": "x"}, format="json").status_code == 404
    assert (
        api.patch(
            f"/api/v1/cases/{hidden.pk}/status", {"status": "closed"}, format="json"
        ).status_code
        == 404
    )
    assert api.get(f"/api/v1/cases/{hidden.pk}/timeline").status_code == 404
    assert api.get(f"/api/v1/cases/number/{hidden.number}").status_code == 404
    assert api.get("/api/v1/cases").json()["results"] == []
    assert api.get("/api/v1/cases/search", {"q": hidden.title.split()[0]}).json()["results"] == []
    assert api.get("/api/v1/tasks").json()["results"] == []


def test_agents_cannot_create_cases_in_a_team_they_are_not_in(api):
    response = api.post("/api/v1/cases", {"title": "x", "team": TeamFactory().pk}, format="json")

    assert response.status_code == 400
    assert response.json() == {"team": ["You are not a member of this team."]}


def test_only_leads_and_admins_delete(api, team):
    case = CaseFactory(team=team)
    lead = make_agent(team=team, role="lead")
    lead_api = APIClient()
    lead_api.force_authenticate(lead)

    assert api.delete(f"/api/v1/cases/{case.pk}").status_code == 403
    assert lead_api.delete(f"/api/v1/cases/{case.pk}").status_code == 204
    assert not Case.objects.filter(pk=case.pk).exists()


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "nonsense"}, "status"),
        ({"team": "abc"}, "team"),
        ({"created_after": "yesterday"}, "created_after"),
        ({"ordering": "password"}, None),
    ],
)
def test_malformed_filters_are_400_or_ignored_never_500(api, params, field):
    response = api.get("/api/v1/cases", params)

    if field is None:
        assert response.status_code == 200
    else:
        assert response.status_code == 400
        assert field in response.json()


def test_list_queries_do_not_grow_with_the_page(api, team, agent):
    customer = CustomerFactory()
    for _ in range(100):
        case = CaseFactory(team=team, customer=customer, assignee=agent, tags=["a", "b"])
        services.case_add_watcher(actor=None, case=case, watcher=agent)
    api.get("/api/v1/cases", {"page_size": 1})  # the user's teams are read once per request user

    with CaptureQueriesContext(connection) as ten:
        assert len(api.get("/api/v1/cases", {"page_size": 10}).json()["results"]) == 10
    with CaptureQueriesContext(connection) as hundred:
        assert len(api.get("/api/v1/cases", {"page_size": 100}).json()["results"]) == 100

    assert len(ten) == len(hundred)
