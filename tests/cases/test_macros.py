"""Canned responses (macros): rendered for a case with its variables, applied with their
actions, visible per team, checked in admin (issue 12)."""

from __future__ import annotations

import pytest
from django.test import Client
from rest_framework.test import APIClient

from cases import services
from cases.models import CannedResponse, Case
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db

GREETING = (
    "<p>Hello {{ customer.first_name }},</p>"
    "<p>about {{ case.number }} “{{ case.title }}” ({{ case.status }}):</p>"
    "<p>{{ signature }}</p><p>{{ agent.name }}, {{ team.name }}</p>"
)


def macro(team=None, **fields: object) -> CannedResponse:
    fields.setdefault("name", f"Macro {CannedResponse.objects.count() + 1}")
    fields.setdefault("body", "<p>Hello {{ customer.name }}</p>")
    return CannedResponse.objects.create(team=team, **fields)


def render(api: APIClient, case: Case, made: CannedResponse):
    return api.post(f"/api/v1/cases/{case.pk}/macros/{made.pk}/render")


def apply(api: APIClient, case: Case, made: CannedResponse):
    return api.post(f"/api/v1/cases/{case.pk}/macros/{made.pk}/apply")


def client_for(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def signing_agent(team):
    return make_agent(
        team=team, first_name="Maria", last_name="Lind", signature="Maria Lind\nBilling & Co"
    )


@pytest.fixture
def case(team):
    customer = CustomerFactory(name="Anna Nordwind", emails=["anna@nordwind.example"])
    return CaseFactory(team=team, title="Invoice shows 21% VAT", customer=customer)


# --- rendering --------------------------------------------------------------------------------


def test_a_macro_renders_the_case_customer_agent_and_signature_without_side_effects(
    signing_agent, case, team
):
    greeting = macro(team, body=GREETING, subject="Your case {{ case.number }}",
                     set_status="awaiting_customer", add_tags=["waiting"])  # fmt: skip
    events_before = case.timeline.count()

    response = render(client_for(signing_agent), case, greeting)

    assert response.status_code == 200
    assert response.json() == {
        "body": (
            f"<p>Hello Anna,</p><p>about {case.number} “Invoice shows 21% VAT” (New):</p>"
            "<p>Maria Lind<br>Billing &amp; Co</p><p>Maria Lind, Billing</p>"
        ),
        "subject": f"Your case {case.number}",
    }
    case.refresh_from_db()
    assert case.status == "new"
    assert list(case.tags.all()) == []
    assert case.timeline.count() == events_before


def test_customer_supplied_values_come_out_escaped(signing_agent, team):
    customer = CustomerFactory(name="<script>alert(1)</script>", emails=["x@evil.example"])
    case = CaseFactory(team=team, title='<img src=x onerror="alert(2)">', customer=customer)
    made = macro(team, body="Dear {{ customer.name }},\n\nre: {{ case.title }}\n{{ signature }}")

    body = render(client_for(signing_agent), case, made).json()["body"]

    assert body == (
        "<p>Dear &lt;script&gt;alert(1)&lt;/script&gt;,</p>\n\n"
        '<p>re: &lt;img src=x onerror="alert(2)"&gt;<br>Maria Lind<br>Billing &amp; Co</p>'
    )


def test_a_macro_that_fails_for_this_case_is_a_400_and_applies_nothing(signing_agent, team):
    """It passes the admin's check (sample values have a customer) but not a case without."""
    fragile = macro(
        team,
        body="{% if customer.name %}Hi{% else %}{{ case.title|divisibleby:2 }}{% endif %}",
        set_status="awaiting_customer",
        add_tags=["waiting"],
    )
    case = CaseFactory(team=team, title="No customer yet")
    api = client_for(signing_agent)

    rendered, applied = render(api, case, fragile), apply(api, case, fragile)

    for response in (rendered, applied):
        assert response.status_code == 400
        assert response.json()["code"] == "macro_render_failed"
        assert "cannot be rendered for this case" in response.json()["macro"][0]
    case.refresh_from_db()
    assert (case.status, list(case.tags.all())) == ("new", [])


# --- applying ---------------------------------------------------------------------------------


def test_applying_sets_the_status_and_adds_tags_through_the_services(signing_agent, case, team):
    services.case_set_tags(actor=None, case=case, names=["vip"])
    waiting = macro(
        team,
        body="<p>We wait for you, {{ customer.name }}. {{ case.status }}</p>",
        set_status="awaiting_customer",
        add_tags=["Waiting on customer", "vip"],
    )
    api = client_for(signing_agent)

    response = apply(api, case, waiting)

    assert response.status_code == 200
    body = response.json()
    assert body["body"] == "<p>We wait for you, Anna Nordwind. Awaiting customer</p>"
    assert body["case"]["status"] == "awaiting_customer"
    assert sorted(body["case"]["tags"]) == ["vip", "waiting-on-customer"]
    events = api.get(f"/api/v1/cases/{case.pk}/timeline").json()["results"]
    by_kind = {event["kind"]: event for event in events}
    assert by_kind["status_changed"]["data"]["new"] == "awaiting_customer"
    assert by_kind["tags_changed"]["data"] == {"added": ["waiting-on-customer"], "removed": []}
    assert {by_kind[k]["actor"] for k in ("status_changed", "tags_changed")} == {signing_agent.pk}


def test_a_status_the_case_cannot_take_is_refused_and_nothing_is_applied(signing_agent, case, team):
    services.case_change_status(actor=None, case=case, status="resolved")
    waiting = macro(team, set_status="awaiting_customer", add_tags=["waiting"])

    response = apply(client_for(signing_agent), case, waiting)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_transition"
    case.refresh_from_db()
    assert (case.status, list(case.tags.all())) == ("resolved", [])


def test_rules_apply_a_macro_without_an_agent(case, team):
    closing = macro(team, body="<p>{{ customer.name }}{{ signature }}{{ agent.name }}</p>",
                    set_status="resolved")  # fmt: skip

    body = services.macro_apply(macro=closing, case=case, actor=None)

    assert body == "<p>Anna Nordwind</p>"
    case.refresh_from_db()
    assert case.status == "resolved"
    assert case.timeline.filter(kind="status_changed", actor=None).exists()


# --- visibility -------------------------------------------------------------------------------


@pytest.fixture
def macros(team):
    shipping = TeamFactory(name="Shipping")
    return {
        "global": macro(None, name="Thanks"),
        "billing": macro(team, name="Refund"),
        "shipping": macro(shipping, name="Tracking"),
        "inactive": macro(team, name="Old", active=False),
    }


def names(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [row["name"] for row in response.json()["results"]]


def test_agents_list_the_global_macros_and_their_teams(signing_agent, macros, team, case,
                                                      django_assert_max_num_queries):  # fmt: skip
    api = client_for(signing_agent)

    with django_assert_max_num_queries(4):
        mine = names(api.get("/api/v1/macros"))

    assert mine == ["Refund", "Thanks"]
    assert names(api.get("/api/v1/macros", {"team": "global"})) == ["Thanks"]
    assert names(api.get("/api/v1/macros", {"team": team.pk})) == ["Refund"]
    assert names(api.get("/api/v1/macros", {"case": case.pk})) == ["Refund", "Thanks"]
    assert names(client_for(make_agent(role="admin")).get("/api/v1/macros")) == [
        "Refund",
        "Thanks",
        "Tracking",
    ]


def test_a_case_filter_for_a_case_one_cannot_see_is_a_400(signing_agent, macros):
    hidden = CaseFactory(team=macros["shipping"].team)

    response = client_for(signing_agent).get("/api/v1/macros", {"case": hidden.pk})

    assert response.status_code == 400
    assert "case" in response.json()


def test_another_teams_or_an_inactive_macro_or_a_hidden_case_is_404(signing_agent, macros, case):
    api = client_for(signing_agent)
    hidden = CaseFactory(team=macros["shipping"].team)
    admin_api = client_for(make_agent(role="admin"))

    assert render(api, case, macros["global"]).status_code == 200
    assert render(api, case, macros["billing"]).status_code == 200
    assert render(api, case, macros["shipping"]).status_code == 404
    assert apply(api, case, macros["shipping"]).status_code == 404
    assert render(api, case, macros["inactive"]).status_code == 404
    assert render(api, hidden, macros["global"]).status_code == 404
    assert apply(api, hidden, macros["global"]).status_code == 404
    # Admins see every case, but a team's macro is only for that team's cases.
    assert render(admin_api, hidden, macros["shipping"]).status_code == 200
    assert render(admin_api, case, macros["shipping"]).status_code == 404


def test_the_schema_documents_the_macro_endpoints(signing_agent):
    schema = client_for(signing_agent).get("/api/schema/", {"format": "json"}).json()

    paths = schema["paths"]
    assert "get" in paths["/api/v1/macros"]
    render_op = paths["/api/v1/cases/{case_id}/macros/{macro_id}/render"]["post"]
    assert {"200", "400", "404"} <= set(render_op["responses"])
    assert "post" in paths["/api/v1/cases/{case_id}/macros/{macro_id}/apply"]


# --- admin ------------------------------------------------------------------------------------

ADD_URL = "/admin/cases/cannedresponse/add/"


@pytest.fixture
def as_admin() -> Client:
    client = Client()
    client.force_login(make_agent(role="admin"))
    return client


def admin_form(**changes: object) -> dict:
    form = {"name": "Need more details", "team": "", "active": "on", "subject": "",
            "body": "<p>Hello {{ customer.name }}, could you send {{ case.number }}'s invoice?</p>",
            "set_status": "awaiting_customer", "add_tags": "waiting, Needs Info"}  # fmt: skip
    form.update({key: str(value) for key, value in changes.items()})
    return form


def test_a_macro_written_in_admin_is_saved_and_previewed_with_sample_values(as_admin):
    response = as_admin.post(ADD_URL, admin_form())

    assert response.status_code == 302
    saved = CannedResponse.objects.get()
    assert (saved.team, saved.set_status, saved.add_tags) == (
        None,
        "awaiting_customer",
        ["waiting", "needs-info"],
    )
    assert saved.created_by is not None
    page = as_admin.get(f"/admin/cases/cannedresponse/{saved.pk}/change/").content.decode()
    assert "Hello Anna Example, could you send CASE-000123's invoice?" in page
    assert 'value="waiting, needs-info"' in page
    listing = as_admin.get("/admin/cases/cannedresponse/").content.decode()
    assert "Need more details" in listing
    assert "Global" in listing


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"body": "Hi {% if %}"}, "body", "does not parse"),
        ({"body": "{% endif %}"}, "body", "{% endif %} is unknown or misplaced"),
        ({"body": "{% load static %}{% static 'x' %}"}, "body", "{% load %} is not available"),
        ({"body": "{% debug %}"}, "body", "{% debug %} is not available"),
        ({"body": "{% include 'admin/base.html' %}"}, "body", "is not available"),
        ({"body": "{{ customer.name|safe }}"}, "body", "Invalid filter: 'safe'"),
        ({"body": "{{ case.title|divisibleby:2 }}"}, "body", "fails on sample values"),
        ({"subject": "{% if %}"}, "subject", "does not parse"),
        ({"set_status": "escalated"}, "set_status", "Select a valid choice"),
        ({"add_tags": "ok, !!!"}, "add_tags", "is not a tag name"),
    ],
)
def test_bad_macros_are_form_errors_in_admin(as_admin, changes, field, message):
    response = as_admin.post(ADD_URL, admin_form(**changes))

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors[field]), errors
    assert not CannedResponse.objects.exists()


def test_names_are_unique_per_team_and_among_global_macros(as_admin, team):
    first = as_admin.post(ADD_URL, admin_form())
    same_global = as_admin.post(ADD_URL, admin_form())
    for_team = as_admin.post(ADD_URL, admin_form(team=team.pk))
    same_team = as_admin.post(ADD_URL, admin_form(team=team.pk))

    assert [r.status_code for r in (first, same_global, for_team, same_team)] == [
        302,
        200,
        302,
        200,
    ]
    assert "A global canned response has that name" in same_global.content.decode()
    assert "This team has a canned response of that name" in same_team.content.decode()
