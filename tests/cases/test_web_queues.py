"""The case queues in the agent UI, through HTTP: views, filters, search, pages, bulk, CSV."""

from __future__ import annotations

import csv
import dataclasses
import io
import re

import pytest
from django.test import Client

from cases.choices import CaseStatus
from cases.models import Case, SavedView
from cases.web import queues
from tests.cases.factories import CaseFactory, CustomerFactory, TeamFactory, make_agent

pytestmark = pytest.mark.django_db


def small_pages(monkeypatch, size: int) -> None:
    label, keyset = queues.SORTS["updated"]
    monkeypatch.setitem(queues.SORTS, "updated", (label, dataclasses.replace(keyset, size=size)))


def numbers(response) -> list[str]:
    return re.findall(r'<span class="number">(CASE-\d+)</span>', response.content.decode())


# --- views and visibility ----------------------------------------------------------------


def test_the_default_view_is_my_open_cases(web, agent, team):
    mine = CaseFactory(team=team, assignee=agent, title="Mine and open")
    CaseFactory(team=team, title="Nobody's")
    done = CaseFactory(team=team, assignee=agent, title="Mine but resolved")
    done.status = CaseStatus.RESOLVED
    done.save()

    response = web.get("/cases/")

    assert response.status_code == 200
    assert numbers(response) == [mine.number]


def test_unassigned_team_and_all_views(web, agent, team):
    other_team = TeamFactory(name="Sales")
    unassigned = CaseFactory(team=team)
    mine = CaseFactory(team=team, assignee=agent)
    CaseFactory(team=other_team, title="Not visible")

    assert numbers(web.get("/cases/?view=unassigned")) == [unassigned.number]
    assert set(numbers(web.get("/cases/?view=team"))) == {unassigned.number, mine.number}
    assert set(numbers(web.get("/cases/?view=all"))) == {unassigned.number, mine.number}


def test_a_queue_never_shows_another_teams_cases_whatever_the_filters(web, team):
    other = CaseFactory(team=TeamFactory(name="Sales"), title="Secret merger plans")

    response = web.get(f"/cases/?view=all&team={other.team_id}&q=Secret")

    assert numbers(response) == []
    assert "merger plans" not in response.content.decode()


def test_filters_combine_and_bad_values_are_reported_not_fatal(web, team):
    urgent = CaseFactory(team=team, priority="urgent", type="problem")
    CaseFactory(team=team, priority="urgent", type="question")
    CaseFactory(team=team, priority="low", type="problem")

    assert numbers(web.get("/cases/?view=all&priority=urgent&type=problem")) == [urgent.number]
    bad = web.get("/cases/?view=all&priority=whenever&created_after=yesterday")
    assert bad.status_code == 200
    assert "Select a valid choice" in bad.content.decode()


def test_assignee_words_me_and_none(web, agent, team):
    mine = CaseFactory(team=team, assignee=agent)
    nobody = CaseFactory(team=team)

    assert numbers(web.get("/cases/?assignee=me")) == [mine.number]
    assert numbers(web.get("/cases/?assignee=none")) == [nobody.number]


# --- search -------------------------------------------------------------------------------------


def test_search_finds_by_words_and_marks_them(web, team):
    hit = CaseFactory(team=team, title="Refund for broken kettle")
    CaseFactory(team=team, title="Password reset")

    response = web.get("/cases/?q=kettle")

    assert numbers(response) == [hit.number]
    assert "<mark>kettle</mark>" in response.content.decode()


def test_search_sorts_by_update_or_by_best_match(web, team):
    exact = CaseFactory(team=team, title="Printer jam on floor three")
    loose = CaseFactory(team=team, title="Printer", description="A jam somewhere")

    assert numbers(web.get("/cases/?q=printer+jam")) == [loose.number, exact.number]
    assert numbers(web.get("/cases/?q=printer+jam&sort=relevance")) == [exact.number, loose.number]


def test_search_by_customer_email_and_case_number(web, team):
    customer = CustomerFactory(name="Ada Lovelace", emails=["ada@engine.example"])
    hit = CaseFactory(team=team, customer=customer, title="Engine question")
    CaseFactory(team=team, title="Something else")

    assert numbers(web.get("/cases/?q=ada@engine.example")) == [hit.number]
    assert numbers(web.get(f"/cases/?q={hit.number.lower()}")) == [hit.number]


def test_highlighting_escapes_what_customers_wrote(web, team):
    CaseFactory(team=team, title="<script>alert(1)</script> kettle")

    body = web.get("/cases/?q=kettle").content.decode()

    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt; <mark>kettle</mark>" in body


# --- pages, sorting and counts ----------------------------------------------------------------


def test_keyset_pages_walk_forward_and_back_without_gaps(web, team, monkeypatch):
    small_pages(monkeypatch, 3)
    created = [CaseFactory(team=team, title=f"Case {i}") for i in range(8)]
    expected = [case.number for case in sorted(created, key=lambda c: (c.updated_at, c.pk))][::-1]

    seen, url, pages = [], "/cases/?view=all", []
    while url:
        response = web.get(url)
        pages.append(numbers(response))
        seen += pages[-1]
        nxt = re.search(r'href="(\?[^"]*)" rel="next"', response.content.decode())
        url = "/cases/" + nxt.group(1).replace("&amp;", "&") if nxt else None

    assert seen == expected
    assert [len(page) for page in pages] == [3, 3, 2]
    previous = re.search(r'href="(\?[^"]*)" rel="prev"', response.content.decode()).group(1)
    assert numbers(web.get("/cases/" + previous.replace("&amp;", "&"))) == pages[1]


def test_a_forged_cursor_is_refused_politely(web, team):
    CaseFactory(team=team)

    response = web.get("/cases/?view=all&cursor=forged")

    assert response.status_code == 200
    assert "This page link is not valid any more" in response.content.decode()
    assert len(numbers(response)) == 1


def test_sort_by_priority_puts_urgent_first(web, team):
    low = CaseFactory(team=team, priority="low")
    urgent = CaseFactory(team=team, priority="urgent")
    normal = CaseFactory(team=team, priority="normal")

    response = web.get("/cases/?view=all&sort=priority")

    assert numbers(response) == [urgent.number, normal.number, low.number]


def test_counts_are_capped(web, team, monkeypatch):
    monkeypatch.setattr("cases.web.queues.COUNT_CAP", 2)
    for _ in range(3):
        CaseFactory(team=team)

    assert web.get("/cases/count?view=all").content.decode().strip() == "2+ cases"
    counts = web.get("/cases/counts").content.decode()
    assert 'id="count-all" hx-swap-oob="true">2+<' in counts
    assert 'id="count-mine" hx-swap-oob="true">0<' in counts


def test_the_queue_page_costs_the_same_queries_for_one_case_or_fifty(
    web, agent, team, django_assert_max_num_queries
):
    customer = CustomerFactory()
    CaseFactory(team=team, assignee=agent, customer=customer, tags=["vip"])
    with django_assert_max_num_queries(99) as one:
        web.get("/cases/?view=all")
    for i in range(49):
        CaseFactory(team=team, assignee=agent, customer=CustomerFactory(), tags=[f"t{i}"])

    with django_assert_max_num_queries(len(one.captured_queries)):
        response = web.get("/cases/?view=all")

    assert len(numbers(response)) == 50


# --- bulk changes --------------------------------------------------------------------------------


def test_bulk_assign_to_me_and_status_with_a_refusal_reported(web, agent, team):
    first, second = CaseFactory(team=team), CaseFactory(team=team)
    closed = CaseFactory(team=team)
    Case.objects.filter(pk=closed.pk).update(status=CaseStatus.CLOSED)

    response = web.post(
        "/cases/bulk",
        {"ids": [first.pk, second.pk], "action": "assign", "assignee": "me", "next": "/cases/"},
        follow=True,
    )
    assert "Assigned to" in response.content.decode()
    assert set(Case.objects.filter(assignee=agent).values_list("pk", flat=True)) == {
        first.pk,
        second.pk,
    }

    response = web.post(
        "/cases/bulk",
        {"ids": [first.pk, closed.pk], "action": "status", "status": "awaiting_customer"},
        follow=True,
    )
    body = response.content.decode()
    assert "on 1 case." in body
    assert closed.number in body
    assert Case.objects.get(pk=first.pk).status == CaseStatus.AWAITING_CUSTOMER
    assert Case.objects.get(pk=closed.pk).status == CaseStatus.CLOSED


def test_bulk_tag_keeps_existing_tags_and_ignores_invisible_cases(web, team):
    tagged = CaseFactory(team=team, tags=["billing"])
    hidden = CaseFactory(team=TeamFactory(name="Sales"))

    response = web.post(
        "/cases/bulk", {"ids": [tagged.pk, hidden.pk], "action": "tag", "tag": "Urgent Fix"},
        follow=True,
    )  # fmt: skip

    assert sorted(tagged.tags.values_list("name", flat=True)) == ["billing", "urgent-fix"]
    assert hidden.tags.count() == 0
    assert "1 of the ticked cases are gone or not yours to see" in response.content.decode()


def test_bulk_refuses_an_agent_outside_my_teams_and_a_foreign_next(web, team):
    case = CaseFactory(team=team)
    stranger = make_agent(team=TeamFactory(name="Sales"))

    response = web.post(
        "/cases/bulk",
        {"ids": [case.pk], "action": "assign", "assignee": stranger.pk, "next": "https://evil.example/"},
    )  # fmt: skip

    assert response["Location"] == "/cases/"
    assert Case.objects.get(pk=case.pk).assignee is None


# --- saved views and export ----------------------------------------------------------------------


def test_an_agent_saves_a_view_and_only_they_see_it(web, agent, team):
    urgent = CaseFactory(team=team, priority="urgent")
    CaseFactory(team=team, priority="low")

    response = web.post(
        "/views/", {"name": "  Fires  ", "query": "priority=urgent&cursor=abc&view=all"}
    )

    view = SavedView.objects.get(owner=agent)
    assert view.name == "Fires"
    assert view.query == "priority=urgent&view=all"
    listed = web.get(response["Location"])
    assert numbers(listed) == [urgent.number]
    assert "Fires" in listed.content.decode()
    other = Client()
    other.force_login(make_agent(team=team))
    assert "Fires" not in other.get("/cases/").content.decode()
    assert other.post(f"/views/{view.pk}/delete").status_code == 302
    assert SavedView.objects.filter(pk=view.pk).exists()


def test_saving_a_view_without_a_name_says_so(web):
    response = web.post("/views/", {"name": " ", "query": "view=all"}, follow=True)

    assert "Give the view a name." in response.content.decode()
    assert not SavedView.objects.exists()


def test_csv_export_streams_every_case_of_the_queue_safely(web, team, monkeypatch):
    small_pages(monkeypatch, 2)
    customer = CustomerFactory(name="=HYPERLINK(evil)", emails=["c@x.example"])
    for i in range(5):
        CaseFactory(team=team, title=f"Export {i}", customer=customer, tags=["a", "b"])
    CaseFactory(team=TeamFactory(name="Sales"), title="Export hidden")

    response = web.get("/cases/export.csv?view=all&q=export")

    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 6
    header = rows[0]
    assert rows[1][header.index("customer")] == "'=HYPERLINK(evil)"
    assert rows[1][header.index("customer_email")] == "c@x.example"
    assert rows[1][header.index("tags")] == "a b"
    assert all("hidden" not in row[1] for row in rows)


def test_htmx_gets_the_results_with_the_head_out_of_band(web, team):
    CaseFactory(team=team, priority="urgent")

    body = web.get(
        "/cases/?view=all&priority=urgent", headers={"HX-Request": "true"}
    ).content.decode()

    assert "<html" not in body
    assert 'id="queue-head" hx-swap-oob="true"' in body
    assert "export.csv?view=all&amp;priority=urgent" in body
    assert 'id="saved-query" hx-swap-oob="true"' in body


def test_the_workspace_links_the_cases_either_side_in_the_queue(web, team):
    older, middle, newer = (CaseFactory(team=team, title=f"Case {i}") for i in range(3))
    queue = web.get("/cases/?view=all").content.decode()
    link = re.search(rf'href="(/cases/{middle.number}/\?from=[^"]+)"', queue).group(1)

    page = web.get(link.replace("&amp;", "&")).content.decode()

    assert re.search(rf'href="/cases/{newer.number}/\?from=[^"]*" rel="prev"', page)
    assert re.search(rf'href="/cases/{older.number}/\?from=[^"]*" rel="next"', page)
    first = web.get(f"/cases/{newer.number}/?from=view%3Dall").content.decode()
    assert 'rel="prev"' not in first
    assert f"/cases/{middle.number}/" in first


def test_pages_show_times_in_the_agents_zone_and_the_api_keeps_utc(web, agent, team):
    CaseFactory(team=team, assignee=agent)
    agent.profile.timezone = "Asia/Tokyo"
    agent.profile.save()

    page = web.get("/cases/").content.decode()
    api = web.get("/api/v1/cases").json()

    assert re.search(r'<time datetime="[0-9T:.-]+\+09:00"', page)
    assert api["results"][0]["updated_at"].endswith("Z")
