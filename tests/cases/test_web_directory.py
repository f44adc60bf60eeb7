"""Customers, organizations and tasks in the agent UI, through HTTP."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cases import services
from cases.choices import CaseStatus, TaskStatus
from cases.models import Customer, Task
from cases.web.keyset import BadCursor, Key, Keyset
from tests.cases.factories import (
    CaseFactory,
    CustomerFactory,
    OrganizationFactory,
    TaskFactory,
    TeamFactory,
    make_agent,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def other_team():
    return TeamFactory(name="Sales")


def customer_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-href="/customers/(\d+)/"', text(response))]


def organization_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr data-href="/organizations/(\d+)/"', text(response))]


def case_numbers(response) -> list[str]:
    return re.findall(r'<tr data-href="/cases/([^/"]+)/"', text(response))


def task_ids(response) -> list[int]:
    return [int(pk) for pk in re.findall(r'<tr id="task-(\d+)"', text(response))]


def text(response) -> str:
    return response.content.decode()


def link(response, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}"', text(response))
    return found.group(1).replace("&amp;", "&") if found else None


def queries_for(client: Client, url: str) -> int:
    client.get(url)  # warm caches (content types, sessions) out of the measurement
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return len(captured.captured_queries)


def set_status(case, status: str) -> None:
    services.case_change_status(actor=None, case=case, status=status)


# --- pages need a signed-in agent --------------------------------------------------------


@pytest.mark.parametrize("url", ["/customers/", "/organizations/", "/tasks/", "/customers/1/"])
def test_pages_send_anonymous_visitors_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


# --- customers ----------------------------------------------------------------------------


def test_customer_rows_show_email_organization_vip_and_visible_open_cases(web, team, other_team):
    acme = OrganizationFactory(name="Acme")
    dana = CustomerFactory(
        name="Dana Scully", emails=["dana@acme.example", "ds@home.example"], organization=acme
    )
    dana.is_vip = True
    dana.save()
    CaseFactory(team=team, customer=dana)
    CaseFactory(team=team, customer=dana)
    set_status(CaseFactory(team=team, customer=dana), CaseStatus.RESOLVED)
    CaseFactory(team=other_team, customer=dana)  # not the agent's to see, not counted

    response = web.get("/customers/")

    page = text(response)
    row = page[page.index('<tr data-href="/customers/') :]
    row = row[: row.index("</tr>")]
    assert response.status_code == 200
    assert "Dana Scully" in row
    assert "dana@acme.example" in row
    assert "ds@home.example" not in row
    assert f'href="/organizations/{acme.pk}/"' in row
    assert 'class="badge vip"' in row
    assert '<td class="num"><strong>2</strong></td>' in row


def test_customer_search_by_name_and_by_email(web):
    fox = CustomerFactory(name="Fox Mulder", emails=["fox@fbi.example"])
    dana = CustomerFactory(name="Dana Scully", emails=["dana@fbi.example"])

    assert customer_ids(web.get("/customers/", {"q": "mulder"})) == [fox.pk]
    assert customer_ids(web.get("/customers/", {"q": "dana@fbi.example"})) == [dana.pk]
    assert customer_ids(web.get("/customers/", {"q": "nobody-like-this"})) == []


def test_customer_filters_vip_and_organization(web):
    acme, globex = OrganizationFactory(name="Acme"), OrganizationFactory(name="Globex")
    vip = CustomerFactory(name="Vera", organization=acme, is_vip=True)
    plain = CustomerFactory(name="Paul", organization=acme)
    elsewhere = CustomerFactory(name="Gina", organization=globex)

    assert customer_ids(web.get("/customers/", {"vip": "yes"})) == [vip.pk]
    assert customer_ids(web.get("/customers/", {"vip": "no"})) == [elsewhere.pk, plain.pk]
    assert customer_ids(web.get("/customers/", {"org": "acm"})) == [plain.pk, vip.pk]
    by_id = web.get("/customers/", {"organization": globex.pk})
    assert customer_ids(by_id) == [elsewhere.pk]
    assert "Customers of" in text(by_id)


def test_bad_customer_filters_are_reported_and_the_good_ones_still_apply(web):
    CustomerFactory(name="Anyone")
    vip = CustomerFactory(name="Vera", is_vip=True)

    response = web.get("/customers/", {"vip": "yes", "organization": "x"})

    assert response.status_code == 200
    assert "Enter a whole number" in text(response)
    assert customer_ids(response) == [vip.pk]


def test_customer_pages_walk_forward_and_back_without_gaps(web):
    made = [CustomerFactory(name=f"Customer {n:03d}") for n in range(60)]

    first = web.get("/customers/")
    second = web.get(f"/customers/{link(first, 'next')}")
    back = web.get(f"/customers/{link(second, 'prev')}")

    assert customer_ids(first) == [c.pk for c in made[:50]]
    assert customer_ids(second) == [c.pk for c in made[50:]]
    assert link(second, "next") is None
    assert customer_ids(back) == customer_ids(first)
    assert link(first, "prev") is None


def test_search_results_page_by_relevance_and_keep_the_query(web):
    for n in range(55):
        CustomerFactory(name=f"Smith {n:02d}", emails=[f"smith{n}@mail.example"])

    first = web.get("/customers/", {"q": "smith"})
    second = web.get(f"/customers/{link(first, 'next')}")

    assert "q=smith" in link(first, "next")
    assert len(customer_ids(first)) == 50
    assert len(customer_ids(second)) == 5
    assert not set(customer_ids(first)) & set(customer_ids(second))


def test_a_forged_cursor_shows_the_first_page_with_a_message(web):
    customer = CustomerFactory(name="Only one")

    response = web.get("/customers/", {"cursor": "not-a-cursor"})

    assert response.status_code == 200
    assert "not valid any more" in text(response)
    assert customer_ids(response) == [customer.pk]


def test_a_cursor_of_one_list_is_refused_by_another():
    by_name = Keyset("customers", (Key("name"), Key("pk")))
    by_due = Keyset("tasks-due", (Key("due_at", nullable=True), Key("pk")))
    customer = Customer(pk=1, name="A")

    cursor = by_name._encode(customer, backward=False)

    with pytest.raises(BadCursor):
        by_due.paginate(Task.objects.all(), cursor)


def test_customer_list_queries_do_not_grow_with_rows(web, team, django_assert_max_num_queries):
    acme = OrganizationFactory(name="Acme")

    def customer_with_case(n: int) -> None:
        customer = CustomerFactory(name=f"C {n:02d}", organization=acme, phones=["+1 555"])
        CaseFactory(team=team, customer=customer)

    customer_with_case(0)
    one = queries_for(web, "/customers/")
    for n in range(1, 20):
        customer_with_case(n)
    many = queries_for(web, "/customers/")

    assert len(customer_ids(web.get("/customers/"))) == 20
    assert many == one
    with django_assert_max_num_queries(10):
        web.get("/customers/?q=C")


# --- customer detail ----------------------------------------------------------------------


def test_customer_detail_shows_contact_data_and_visible_cases_open_first(web, team, other_team):
    acme = OrganizationFactory(name="Acme")
    customer = CustomerFactory(
        name="Dana Scully",
        emails=["dana@acme.example", "d2@acme.example"],
        phones=[("+1 202 555 0100", "mobile")],
        organization=acme,
        notes="Prefers phone calls.",
    )
    resolved = CaseFactory(team=team, customer=customer, title="Old and done")
    set_status(resolved, CaseStatus.RESOLVED)
    older_open = CaseFactory(team=team, customer=customer)
    newer_open = CaseFactory(team=team, customer=customer)
    hidden = CaseFactory(team=other_team, customer=customer)

    response = web.get(f"/customers/{customer.pk}/")

    page = text(response)
    assert response.status_code == 200
    assert "dana@acme.example" in page
    assert "d2@acme.example" in page
    assert 'href="tel:+1 202 555 0100"' in page
    assert "Prefers phone calls." in page
    assert f'href="/organizations/{acme.pk}/"' in page
    assert case_numbers(response) == [newer_open.number, older_open.number, resolved.number]
    assert hidden.number not in page


def test_customer_detail_queries_do_not_grow_with_cases(web, team, agent):
    customer = CustomerFactory(name="Busy", phones=["+1 555 0100"])
    CaseFactory(team=team, customer=customer, assignee=agent)
    one = queries_for(web, f"/customers/{customer.pk}/")
    for _ in range(19):
        CaseFactory(team=team, customer=customer, assignee=agent, tags=["billing"])
    many = queries_for(web, f"/customers/{customer.pk}/")

    assert len(case_numbers(web.get(f"/customers/{customer.pk}/"))) == 20
    assert many == one


def test_unknown_customer_is_404(web):
    assert web.get("/customers/999999/").status_code == 404


def test_customer_cases_page_in_their_own_pager(web, team):
    customer = CustomerFactory(name="Busy")
    cases = [CaseFactory(team=team, customer=customer) for _ in range(30)]

    first = web.get(f"/customers/{customer.pk}/")
    second = web.get(f"/customers/{customer.pk}/{link(first, 'next')}")

    newest_first = [c.number for c in reversed(cases)]
    assert case_numbers(first) == newest_first[:25]
    assert case_numbers(second) == newest_first[25:]


def test_editing_a_customer_goes_through_the_service(web):
    acme = OrganizationFactory(name="Acme Corporation")
    customer = CustomerFactory(name="Dana")
    seq_before = customer.change_seq

    response = web.post(
        f"/customers/{customer.pk}/",
        {"name": "Dana Scully", "organization": "acme corporation", "is_vip": "on", "notes": "Hi"},
    )

    customer.refresh_from_db()
    assert response.status_code == 302
    assert (customer.name, customer.organization, customer.is_vip, customer.notes) == (
        "Dana Scully",
        acme,
        True,
        "Hi",
    )
    assert customer.change_seq > seq_before  # synced address books hear about it
    assert "Saved Dana Scully" in text(web.get(response["Location"]))


def test_editing_a_customer_reports_bad_input_and_changes_nothing(web):
    customer = CustomerFactory(name="Dana")

    unknown_org = web.post(f"/customers/{customer.pk}/", {"name": "D", "organization": "Nope"})
    no_name = web.post(f"/customers/{customer.pk}/", {"name": "  ", "organization": ""})

    customer.refresh_from_db()
    assert unknown_org.status_code == 400
    assert "There is no organization named “Nope”." in text(unknown_org)
    assert no_name.status_code == 400
    assert "This field is required." in text(no_name)
    assert customer.name == "Dana"


def test_removing_the_organization_of_a_customer(web):
    customer = CustomerFactory(name="Dana", organization=OrganizationFactory(name="Acme"))

    web.post(f"/customers/{customer.pk}/", {"name": "Dana", "organization": ""})

    customer.refresh_from_db()
    assert customer.organization is None


def test_organization_suggestions_for_the_edit_form(web):
    OrganizationFactory(name="Acme Corporation")
    OrganizationFactory(name="Acme Labs")
    OrganizationFactory(name="Globex")

    response = web.get("/organizations/suggestions/", {"organization": "acme"})

    assert text(response).count("<option") == 2
    assert '<option value="Acme Labs">' in text(response)


# --- organizations ------------------------------------------------------------------------


def test_organization_rows_count_customers_and_visible_open_cases(web, team, other_team):
    acme = OrganizationFactory(name="Acme", domains=["acme.example"], tier="gold")
    dana = CustomerFactory(organization=acme)
    CustomerFactory(organization=acme)
    CaseFactory(team=team, customer=dana)
    set_status(CaseFactory(team=team, customer=dana), CaseStatus.CLOSED)
    CaseFactory(team=other_team, customer=dana)

    response = web.get("/organizations/")

    page = text(response)
    assert organization_ids(response) == [acme.pk]
    assert "acme.example" in page
    assert 'class="badge tier-gold"' in page
    assert '<td class="num">2</td>' in page  # customers
    assert '<td class="num"><strong>1</strong></td>' in page  # open cases the agent sees


def test_organization_search_by_name_or_domain_and_tier_filter(web):
    acme = OrganizationFactory(name="Acme", domains=["acme.example"], tier="gold")
    globex = OrganizationFactory(name="Globex", domains=["globex-corp.example"])

    assert organization_ids(web.get("/organizations/", {"q": "acm"})) == [acme.pk]
    assert organization_ids(web.get("/organizations/", {"q": "globex-corp"})) == [globex.pk]
    assert organization_ids(web.get("/organizations/", {"tier": "gold"})) == [acme.pk]
    assert "Select a valid choice" in text(web.get("/organizations/", {"tier": "diamond"}))


def test_organization_pages(web):
    made = [OrganizationFactory(name=f"Org {n:03d}") for n in range(52)]

    first = web.get("/organizations/")
    second = web.get(f"/organizations/{link(first, 'next')}")

    assert organization_ids(first) == [o.pk for o in made[:50]]
    assert organization_ids(second) == [o.pk for o in made[50:]]


def test_organization_list_queries_do_not_grow_with_rows(web, team):
    def organization_with_people(n: int) -> None:
        organization = OrganizationFactory(name=f"Org {n:02d}", domains=[f"org{n}.example"])
        customer = CustomerFactory(organization=organization)
        CaseFactory(team=team, customer=customer)

    organization_with_people(0)
    one = queries_for(web, "/organizations/")
    for n in range(1, 20):
        organization_with_people(n)
    many = queries_for(web, "/organizations/")

    assert len(organization_ids(web.get("/organizations/"))) == 20
    assert many == one


def test_organization_detail_shows_domains_customers_and_visible_cases(web, team, other_team):
    acme = OrganizationFactory(name="Acme", domains=["acme.example", "acme.test"], notes="Big")
    dana = CustomerFactory(name="Dana Scully", organization=acme)
    visible = CaseFactory(team=team, customer=dana)
    hidden = CaseFactory(team=other_team, customer=dana)

    response = web.get(f"/organizations/{acme.pk}/")

    page = text(response)
    assert response.status_code == 200
    assert "acme.example" in page
    assert "acme.test" in page
    assert f'href="/customers/{dana.pk}/"' in page
    assert case_numbers(response) == [visible.number]
    assert hidden.number not in page
    assert web.get("/organizations/999999/").status_code == 404


def test_organization_detail_queries_do_not_grow(web, team):
    acme = OrganizationFactory(name="Acme")

    def customer_with_case() -> None:
        CaseFactory(team=team, customer=CustomerFactory(organization=acme))

    customer_with_case()
    one = queries_for(web, f"/organizations/{acme.pk}/")
    for _ in range(19):
        customer_with_case()
    many = queries_for(web, f"/organizations/{acme.pk}/")

    assert many == one


# --- tasks --------------------------------------------------------------------------------


@pytest.fixture
def tasks_world(agent, team, other_team):
    colleague = make_agent(team=team, first_name="Colin")
    case = CaseFactory(team=team)
    hidden_case = CaseFactory(team=other_team)
    now = timezone.now()
    world = {
        "case": case,
        "colleague": colleague,
        "mine": TaskFactory(case=case, assignee=agent, subject="Mine", due_at=now + timedelta(1)),
        "mine_late": TaskFactory(
            case=case, assignee=agent, subject="Mine late", due_at=now - timedelta(1)
        ),
        "colleagues": TaskFactory(case=case, assignee=colleague, subject="Colin's"),
        "unassigned": TaskFactory(case=case, subject="Nobody's", priority="high"),
        "hidden": TaskFactory(case=hidden_case, subject="Another team's"),
        "done": TaskFactory(case=case, assignee=agent, subject="Finished"),
    }
    services.task_change_status(actor=None, task=world["done"], status=TaskStatus.RESOLVED)
    return world


def pks(*tasks) -> set[int]:
    return {task.pk for task in tasks}


def test_task_views(web, tasks_world):
    w = tasks_world

    assert set(task_ids(web.get("/tasks/"))) == pks(w["mine"], w["mine_late"])
    assert set(task_ids(web.get("/tasks/?view=teams"))) == pks(
        w["mine"], w["mine_late"], w["colleagues"], w["unassigned"]
    )
    assert set(task_ids(web.get("/tasks/?view=overdue"))) == pks(w["mine_late"])
    assert set(task_ids(web.get("/tasks/?view=open"))) == pks(
        w["mine"], w["mine_late"], w["colleagues"], w["unassigned"]
    )
    assert set(task_ids(web.get("/tasks/?view=done"))) == pks(w["done"])


def test_task_filters(web, agent, tasks_world):
    w = tasks_world

    def shown(**params) -> set[int]:
        return set(task_ids(web.get("/tasks/", {"view": "open", **params})))

    assert shown(priority="high") == pks(w["unassigned"])
    assert shown(assignee="none") == pks(w["unassigned"])
    assert shown(assignee="me") == pks(w["mine"], w["mine_late"])
    assert shown(assignee=str(w["colleague"].pk)) == pks(w["colleagues"])
    assert shown(status="in_progress") == set()


def test_due_range_is_read_in_the_agents_time_zone(web, agent, team):
    agent.profile.timezone = "Pacific/Auckland"
    agent.profile.save()
    auckland = ZoneInfo("Pacific/Auckland")
    case = CaseFactory(team=team)
    late_on_the_first = TaskFactory(
        case=case, assignee=agent, due_at=datetime(2030, 3, 1, 23, 30, tzinfo=auckland)
    )
    early_on_the_second = TaskFactory(
        case=case, assignee=agent, due_at=datetime(2030, 3, 2, 0, 30, tzinfo=auckland)
    )

    first = web.get("/tasks/", {"due_from": "2030-03-01", "due_to": "2030-03-01"})
    second = web.get("/tasks/", {"due_from": "2030-03-02"})

    assert task_ids(first) == [late_on_the_first.pk]
    assert task_ids(second) == [early_on_the_second.pk]
    assert "Sat 2 Mar 2030, 00:30" in text(second)  # shown in Auckland time too


def test_bad_task_filters_are_reported(web, tasks_world):
    backwards = web.get("/tasks/", {"due_from": "2030-03-02", "due_to": "2030-03-01"})
    not_a_date = web.get("/tasks/", {"due_from": "soon"})
    stranger = web.get("/tasks/", {"assignee": "999999"})

    assert backwards.status_code == 200
    assert "before its start" in text(backwards)
    assert "Enter a valid date." in text(not_a_date)
    assert "Select a valid choice" in text(stranger)
    assert set(task_ids(stranger)) == pks(tasks_world["mine"], tasks_world["mine_late"])


def test_tasks_sort_by_due_date_with_undated_last_and_page_both_ways(web, agent, team):
    case = CaseFactory(team=team)
    now = timezone.now()
    dated = [
        TaskFactory(case=case, assignee=agent, due_at=now + timedelta(hours=n)) for n in range(40)
    ]
    undated = [TaskFactory(case=case, assignee=agent) for _ in range(20)]
    expected = [t.pk for t in dated] + [t.pk for t in undated]

    first = web.get("/tasks/")
    second = web.get(f"/tasks/{link(first, 'next')}")
    back = web.get(f"/tasks/{link(second, 'prev')}")
    latest_first = web.get("/tasks/", {"sort": "-due"})
    latest_second = web.get(f"/tasks/{link(latest_first, 'next')}")

    assert task_ids(first) + task_ids(second) == expected
    assert task_ids(back) == task_ids(first)
    assert link(second, "next") is None
    assert task_ids(latest_first) + task_ids(latest_second) == (
        [t.pk for t in reversed(dated)] + [t.pk for t in reversed(undated)]
    )


def test_a_page_back_that_starts_inside_the_undated_tasks(web, agent, team):
    case = CaseFactory(team=team)
    dated = TaskFactory(case=case, assignee=agent, due_at=timezone.now())
    undated = [TaskFactory(case=case, assignee=agent) for _ in range(100)]

    first = web.get("/tasks/")
    second = web.get(f"/tasks/{link(first, 'next')}")
    third = web.get(f"/tasks/{link(second, 'next')}")
    back_to_second = web.get(f"/tasks/{link(third, 'prev')}")

    assert task_ids(first) == [dated.pk] + [t.pk for t in undated[:49]]
    assert task_ids(second) == [t.pk for t in undated[49:99]]
    assert task_ids(third) == [undated[99].pk]
    assert task_ids(back_to_second) == task_ids(second)


def test_task_rows_lead_to_their_case_for_keyboard_navigation(web, tasks_world):
    response = web.get("/tasks/")

    assert "data-list-nav" in text(response)
    assert f'data-href="/cases/{tasks_world["case"].number}/"' in text(response)


def test_quick_status_change_with_htmx_redraws_the_row(web, tasks_world):
    task = tasks_world["mine"]

    response = web.post(
        f"/tasks/{task.pk}/status/", {"status": "in_progress"}, headers={"HX-Request": "true"}
    )

    task.refresh_from_db()
    assert response.status_code == 200
    assert task.status == TaskStatus.IN_PROGRESS
    assert text(response).lstrip().startswith("<tr")
    assert '<option value="in_progress" selected>' in text(response)
    assert task.case.timeline.filter(kind="task_changed").exists()


def test_quick_status_change_refused_by_the_service_shows_why(web, tasks_world):
    task = tasks_world["done"]  # resolved: it may go back to in progress or be closed, not new

    response = web.post(f"/tasks/{task.pk}/status/", {"status": "new"}, HTTP_HX_REQUEST="true")

    task.refresh_from_db()
    assert response.status_code == 200
    assert "A resolved task cannot become new." in text(response)
    assert task.status == TaskStatus.RESOLVED


def test_quick_status_change_without_htmx_redirects_back(web, tasks_world):
    task = tasks_world["mine"]

    response = web.post(
        f"/tasks/{task.pk}/status/", {"status": "resolved", "next": "/tasks/?view=open"}
    )
    offsite = web.post(
        f"/tasks/{task.pk}/status/", {"status": "closed", "next": "https://evil.example/"}
    )

    assert response["Location"] == "/tasks/?view=open"
    assert offsite["Location"] == "/tasks/"


def test_a_task_the_agent_cannot_see_cannot_be_changed(web, tasks_world):
    hidden = tasks_world["hidden"]

    response = web.post(f"/tasks/{hidden.pk}/status/", {"status": "resolved"})

    hidden.refresh_from_db()
    assert response.status_code == 404
    assert hidden.status == TaskStatus.NEW
    assert web.get(f"/tasks/{hidden.pk}/status/").status_code == 405


def test_task_list_queries_do_not_grow_with_rows(web, agent, team):
    case = CaseFactory(team=team)
    TaskFactory(case=case, assignee=agent, due_at=timezone.now())
    one = queries_for(web, "/tasks/?view=open")
    for n in range(19):
        other_case = CaseFactory(team=team)
        TaskFactory(case=other_case, assignee=agent, due_at=timezone.now() + timedelta(hours=n))
    many = queries_for(web, "/tasks/?view=open")

    assert len(task_ids(web.get("/tasks/?view=open"))) == 20
    assert many == one
