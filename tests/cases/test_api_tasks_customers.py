"""/api/v1/tasks, /customers and /organizations through HTTP."""

import pytest
from rest_framework.test import APIClient

from cases.models import Customer
from crm import changes
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db


def test_task_lifecycle_through_the_api(api, agent, team):
    case = CaseFactory(team=team)

    created = api.post(
        "/api/v1/tasks",
        {
            "subject": "Ring back",
            "case": case.pk,
            "assignee": agent.pk,
            "due_at": "2026-12-01T09:00:00Z",
        },
        format="json",
    )
    task_id = created.json()["id"]
    started = api.patch(f"/api/v1/tasks/{task_id}/status", {"status": "in_progress"}, format="json")
    edited = api.patch(
        f"/api/v1/tasks/{task_id}",
        {"priority": "high", "checklist": [{"text": "Dial", "done": True}]},
        format="json",
    )
    refused = api.patch(f"/api/v1/tasks/{task_id}/status", {"status": "new"}, format="json")

    assert created.status_code == 201, created.json()
    assert created.json()["case_number"] == case.number
    assert started.json()["status"] == "in_progress"
    assert edited.json()["checklist"] == [{"text": "Dial", "done": True}]
    assert refused.status_code == 400
    assert refused.json()["code"] == "invalid_transition"
    assert api.get("/api/v1/tasks/stats").json()["mine_open"] == 1
    assert [t["id"] for t in api.get("/api/v1/tasks/search", {"q": "ring"}).json()["results"]] == [
        task_id
    ]
    assert api.delete(f"/api/v1/tasks/{task_id}").status_code == 204


def test_standalone_task_for_myself_and_reassignment(api, agent, team):
    colleague = make_agent(team=team)
    created = api.post("/api/v1/tasks", {"subject": "Read the new policy"}, format="json").json()

    moved = api.patch(
        f"/api/v1/tasks/{created['id']}/assign", {"assignee": colleague.pk}, format="json"
    )

    assert moved.json()["assignee"] == colleague.pk
    assert created["case"] is None


def test_tasks_on_hidden_cases_cannot_be_created(api):
    hidden = CaseFactory(team=TeamFactory())

    response = api.post("/api/v1/tasks", {"subject": "x", "case": hidden.pk}, format="json")

    assert response.status_code == 400
    assert "case" in response.json()


def test_customers_crud_with_addresses_and_phones(api):
    acme = OrganizationFactory(name="Acme", domains=["acme.example"])

    created = api.post(
        "/api/v1/customers",
        {
            "name": "Ada",
            "emails": ["Ada@Acme.example"],
            "phones": [{"number": "+44 20 1234", "kind": "mobile"}],
        },
        format="json",
    )
    customer_id = created.json()["id"]
    updated = api.patch(
        f"/api/v1/customers/{customer_id}",
        {"emails": ["ada@home.example", "ada@acme.example"], "is_vip": True},
        format="json",
    )
    duplicate = api.post(
        "/api/v1/customers", {"name": "Copy", "emails": ["ADA@home.example"]}, format="json"
    )

    assert created.status_code == 201, created.json()
    assert created.json()["organization"] == acme.pk
    assert created.json()["phones"] == [{"number": "+44 20 1234", "kind": "mobile"}]
    assert updated.json()["emails"] == ["ada@home.example", "ada@acme.example"]
    assert duplicate.status_code == 400
    assert duplicate.json()["code"] == "duplicate_email"
    assert [
        c["id"] for c in api.get("/api/v1/customers", {"q": "home.example"}).json()["results"]
    ] == [customer_id]
    assert [
        c["id"]
        for c in api.get("/api/v1/customers", {"email": "ADA@HOME.EXAMPLE"}).json()["results"]
    ] == [customer_id]
    seq_before = Customer.objects.get(pk=customer_id).change_seq
    assert api.delete(f"/api/v1/customers/{customer_id}").status_code == 204
    assert (
        changes.customer_book()
        .tombstones.filter(item_id=customer_id, change_seq__gt=seq_before)
        .exists()
    )


def test_organizations_crud_and_search(api):
    created = api.post(
        "/api/v1/organizations",
        {"name": "Globex", "domains": ["globex.example"], "tier": "gold"},
        format="json",
    )
    org_id = created.json()["id"]
    updated = api.patch(
        f"/api/v1/organizations/{org_id}",
        {"domains": ["globex.example", "globex.test"]},
        format="json",
    )
    bad = api.post(
        "/api/v1/organizations", {"name": "Bad", "domains": ["not a domain"]}, format="json"
    )

    assert created.status_code == 201
    assert updated.json()["domains"] == ["globex.example", "globex.test"]
    assert bad.status_code == 400
    assert bad.json() == {"domains": ["“not a domain” is not an email domain."], "code": "invalid"}
    assert [
        o["id"] for o in api.get("/api/v1/organizations", {"q": "globex.test"}).json()["results"]
    ] == [org_id]


def test_every_agent_sees_every_customer(team):
    customer = CustomerFactory()
    stranger = make_agent(team=TeamFactory())
    client = APIClient()
    client.force_authenticate(stranger)

    assert client.get(f"/api/v1/customers/{customer.pk}").status_code == 200


def test_anonymous_callers_get_401(api):
    TaskFactory()
    anonymous = APIClient()

    for path in ("/api/v1/cases", "/api/v1/tasks", "/api/v1/customers", "/api/v1/organizations"):
        assert anonymous.get(path).status_code == 401


@pytest.mark.parametrize("path", ["/api/v1/tasks", "/api/v1/customers", "/api/v1/organizations"])
def test_list_queries_do_not_grow_with_the_page(api, agent, team, path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    for i in range(60):
        organization = OrganizationFactory(domains=[f"org{i}.example"])
        CustomerFactory(emails=[f"c{i}@org{i}.example"], phones=["+1 555 0100"])
        TaskFactory(case=CaseFactory(team=team, customer=None), assignee=agent, checklist=["a"])
        assert organization.pk
    api.get(path, {"page_size": 1})

    with CaptureQueriesContext(connection) as ten:
        assert len(api.get(path, {"page_size": 10}).json()["results"]) == 10
    with CaptureQueriesContext(connection) as sixty:
        assert len(api.get(path, {"page_size": 60}).json()["results"]) == 60

    assert len(ten) == len(sixty)
