"""Create the demo data through the services, then give it a believable past.

Everything is written by `cases.services` and `crm.services`, so case numbers, change numbers
and timeline events are exactly what real use produces. The services stamp rows with the current
time; a demo needs sixty days of history, so `_Clock` remembers when each step should have
happened and rewrites the timestamps at the end.
"""

from __future__ import annotations

import random
import time
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial

from django.contrib.auth.hashers import make_password
from django.db import transaction
from django.db.models import Max
from django.db.models.signals import post_save
from django.utils import timezone

from cases import services
from cases.choices import (
    CaseStatus,
    CaseType,
    Channel,
    LinkKind,
    OrganizationTier,
    Priority,
    Sentiment,
    TaskStatus,
)
from cases.demo import data
from cases.errors import NoAgentAvailable
from cases.models import (
    Case,
    CaseLink,
    CaseNote,
    Customer,
    Organization,
    Task,
    TimelineEvent,
)
from crm import services as crm_services
from crm.choices import Role
from crm.models import AgentProfile, Team, User

SEED = 2026
CASES = 150
TASKS = 200
STANDALONE_TASKS = 30
CUSTOMERS = 60
ORGANIZATIONS = 12
DAYS = 60
MERGES = 2
MAX_TASKS_PER_CASE = 4
_LISTENER = "cases.demo.seed.timeline_written"

S = CaseStatus
DONE = (S.RESOLVED, S.CLOSED)
# How a case created this long ago (days) stands today: most old cases are closed.
FINAL_STATUS_WEIGHTS = (
    (0.25, {S.NEW: 55, S.IN_PROGRESS: 35, S.AWAITING_CUSTOMER: 10}),
    (1, {S.NEW: 40, S.IN_PROGRESS: 30, S.AWAITING_CUSTOMER: 15, S.AWAITING_VENDOR: 3,
         S.RESOLVED: 12}),
    (4, {S.NEW: 12, S.IN_PROGRESS: 28, S.AWAITING_CUSTOMER: 24, S.AWAITING_VENDOR: 6,
         S.RESOLVED: 22, S.CLOSED: 8}),
    (12, {S.NEW: 3, S.IN_PROGRESS: 18, S.AWAITING_CUSTOMER: 16, S.AWAITING_VENDOR: 6,
          S.RESOLVED: 22, S.CLOSED: 35}),
    (DAYS + 1, {S.IN_PROGRESS: 5, S.AWAITING_CUSTOMER: 5, S.AWAITING_VENDOR: 2, S.RESOLVED: 6,
                S.CLOSED: 82}),
)  # fmt: skip
TEAM_WEIGHTS = {"Support": 50, "Billing": 22, "Technical": 28}
PRIORITY_WEIGHTS = {Priority.LOW: 18, Priority.NORMAL: 52, Priority.HIGH: 22, Priority.URGENT: 8}
CHANNEL_WEIGHTS = {Channel.EMAIL: 55, Channel.WEB: 18, Channel.PHONE: 12, Channel.CHAT: 10,
                   Channel.API: 5}  # fmt: skip
SENTIMENT_WEIGHTS = {Sentiment.UNKNOWN: 45, Sentiment.NEUTRAL: 30, Sentiment.NEGATIVE: 15,
                     Sentiment.POSITIVE: 10}  # fmt: skip
# Hours until the first agent touches a case, by priority.
TRIAGE_HOURS = {
    Priority.URGENT: (0.05, 0.5),
    Priority.HIGH: (0.2, 2),
    Priority.NORMAL: (0.5, 8),
    Priority.LOW: (1, 24),
}
ESCALATION = {Priority.LOW: Priority.NORMAL, Priority.NORMAL: Priority.HIGH,
              Priority.HIGH: Priority.URGENT}  # fmt: skip


@dataclass(frozen=True)
class DemoSummary:
    organizations: int
    customers: int
    cases: int
    tasks: int
    agents: list[data.AgentSpec]
    seconds: float


def demo_data_exists() -> bool:
    """True once the demo ran (its organizations exist) or the database holds real cases."""
    names = [spec.name for spec in data.ORGANIZATIONS]
    return Organization.objects.filter(name__in=names).exists() or Case.objects.exists()


def demo_data_create(*, password: str, now: datetime | None = None) -> DemoSummary | None:
    """Create the demo data in one transaction; every demo agent signs in with `password`.

    Returns None, changing nothing, if `demo_data_exists()`. The check runs under a row lock on
    the "Support" team, so two runs at once (two `make run`s) cannot both seed.
    """
    started = time.perf_counter()
    with transaction.atomic():
        support = data.TEAMS[0]
        team = crm_services.team_create(name=support.name, email=support.email)
        Team.objects.select_for_update().filter(pk=team.pk).first()
        if demo_data_exists():
            return None
        rng = random.Random(SEED)  # noqa: S311 - demo data, the same on every machine
        seeder = _Seeder(rng=rng, now=now or timezone.now(), password=password)
        seeder.run()
    return DemoSummary(
        organizations=len(seeder.organizations),
        customers=len(seeder.customers),
        cases=len(seeder.cases),
        tasks=seeder.task_count,
        agents=list(data.AGENTS),
        seconds=time.perf_counter() - started,
    )


class _Clock:
    """When each demo row should have happened, applied at the end with bulk updates.

    Demo data only: the services stamp rows with the current time (auto_now_add, now()), and
    nothing else in the project may rewrite them. Here the rows are a fiction about the past, so
    after the services wrote them, their `created_at`, `updated_at`, `resolved_at`,
    `closed_at`, `completed_at` and `first_response_at` are set directly.
    """

    def __init__(self) -> None:
        self._mark = TimelineEvent.objects.aggregate(m=Max("pk"))["m"] or 0
        self._written: list[int] = []  # events written since the last step was dated
        self.events: dict[int, datetime] = {}
        self.cases: dict[int, dict[str, datetime | None]] = {}
        self.notes: dict[int, datetime] = {}
        self.tasks: dict[int, dict[str, datetime | None]] = {}
        self.links: dict[int, datetime] = {}
        self.customers: dict[int, datetime] = {}
        self.organizations: dict[int, datetime] = {}

    @contextmanager
    def listening(self) -> Iterator[None]:
        """Learn the id of each timeline event the services write, without a query per step."""

        def written(sender: type, instance: TimelineEvent, created: bool, **kwargs: object) -> None:
            if created:
                self._written.append(instance.pk)

        post_save.connect(written, sender=TimelineEvent, weak=False, dispatch_uid=_LISTENER)
        try:
            yield
        finally:
            post_save.disconnect(sender=TimelineEvent, dispatch_uid=_LISTENER)

    def happened(self, when: datetime, *cases: Case) -> None:
        """The timeline events written since the last call happened at `when`, on `cases`."""
        for pk in self._written:
            self.events[pk] = when
        self._written.clear()
        for case in cases:
            stamps = self.cases.setdefault(case.pk, {"created_at": when})
            stamps["updated_at"] = max(stamps.get("updated_at") or when, when)

    def responded(self, case: Case, when: datetime) -> None:
        self.cases[case.pk].setdefault("first_response_at", when)

    def task_changed(self, task: Task, when: datetime, *, completed: bool = False) -> None:
        stamps = self.tasks.setdefault(task.pk, {"created_at": when, "completed_at": None})
        stamps["updated_at"] = when
        if completed:
            stamps["completed_at"] = when

    def apply(self) -> None:
        written = TimelineEvent.objects.filter(pk__gt=self._mark).count()
        if self._written or written != len(self.events):
            raise RuntimeError("A timeline event was written outside a dated step.")
        batch = 500
        TimelineEvent.objects.bulk_update(
            [TimelineEvent(pk=pk, created_at=when) for pk, when in self.events.items()],
            ["created_at"],
            batch_size=batch,
        )
        case_fields = ["created_at", "updated_at", "first_response_at"]
        Case.objects.bulk_update(
            [
                Case(pk=pk, **{name: stamps.get(name) for name in case_fields})
                for pk, stamps in self.cases.items()
            ],
            case_fields,
            batch_size=batch,
        )
        # Statuses were changed with `now=` and carry their times already; a merge closes the
        # source at the wall-clock time, so merged cases get theirs here.
        for pk, stamps in self.cases.items():
            if "closed_at" in stamps:
                Case.objects.filter(pk=pk).update(
                    closed_at=stamps["closed_at"], resolved_at=stamps["closed_at"]
                )
        CaseNote.objects.bulk_update(
            [CaseNote(pk=pk, created_at=when) for pk, when in self.notes.items()],
            ["created_at"],
            batch_size=batch,
        )
        task_fields = ["created_at", "updated_at", "completed_at"]
        Task.objects.bulk_update(
            [Task(pk=pk, **stamps) for pk, stamps in self.tasks.items()],
            task_fields,
            batch_size=batch,
        )
        CaseLink.objects.bulk_update(
            [CaseLink(pk=pk, created_at=when) for pk, when in self.links.items()],
            ["created_at"],
            batch_size=batch,
        )
        Customer.objects.bulk_update(
            [
                Customer(pk=pk, created_at=when, updated_at=when)
                for pk, when in self.customers.items()
            ],
            ["created_at", "updated_at"],
            batch_size=batch,
        )
        Organization.objects.bulk_update(
            [
                Organization(pk=pk, created_at=when, updated_at=when)
                for pk, when in self.organizations.items()
            ],
            ["created_at", "updated_at"],
            batch_size=batch,
        )


@dataclass
class _CaseSpec:
    """What one case will be; the details of its history are drawn while it is written."""

    created: datetime
    team: str
    template: data.CaseTemplate
    customer: Customer | None
    priority: str
    channel: str
    path: list[str]
    assigned: bool = True
    misrouted: bool = False  # written to Support, moved to `team` at triage
    duplicated: bool = False  # the customer writes again; the second case is merged into this
    role: str = ""  # "outage", "child" (of the outage) or "caused_by" (linked to it)
    tasks: int = 0


@dataclass(frozen=True)
class _Step:
    """Something that happens to a case at `when`; `run(when)` returns the cases it touched."""

    when: datetime
    run: Callable[[datetime], Iterable[Case]]


@dataclass
class _TaskPlan:
    """A task on a case: its subject, when it is created and how far it gets."""

    subject: str
    checklist: tuple[str, ...]
    created: datetime
    started: datetime | None
    finished: datetime | None
    task: Task | None = None


class _Seeder:
    def __init__(self, *, rng: random.Random, now: datetime, password: str) -> None:
        self.rng, self.now, self.password = rng, now, password
        self.latest = now - timedelta(minutes=2)  # nothing in the past may happen after this
        self.clock = _Clock()
        self.teams: dict[str, Team] = {}
        self.members: dict[str, list[User]] = defaultdict(list)
        self.leads: dict[str, User] = {}
        self.agents: list[User] = []
        self.organizations: list[Organization] = []
        self.countries: dict[int, str] = {}
        self.customers: list[Customer] = []
        self.cases: list[tuple[_CaseSpec, Case]] = []
        self.outage: Case | None = None
        self.task_count = 0

    # --- who -----------------------------------------------------------------------------

    def run(self) -> None:
        self._teams_and_agents()
        self._organizations()
        self._customers()
        with self.clock.listening():
            for spec in self._plan():
                self._case(spec)
            self._links()
        self._standalone_tasks()
        self.clock.apply()

    def _teams_and_agents(self) -> None:
        for team in data.TEAMS:
            self.teams[team.name] = crm_services.team_create(name=team.name, email=team.email)
        for spec in data.AGENTS:
            user, _ = crm_services.agent_upsert(
                email=spec.email,
                password=None,  # set below, hashed once for all
                team=self.teams[spec.team],
                role=spec.role,
                first_name=spec.first_name,
                last_name=spec.last_name,
            )
            for other in spec.also_in:
                crm_services.team_membership_set(team=self.teams[other], user=user)
            # No service sets time zone, availability or capacity: the profile API and the admin
            # save the profile directly, and so does the demo.
            AgentProfile.objects.filter(user=user).update(
                timezone=spec.timezone, availability=spec.availability, capacity=spec.capacity
            )
            if spec.paused:
                crm_services.agent_set_paused(agent=user, paused=True)
            self.agents.append(user)
            for team_name in (spec.team, *spec.also_in):
                self.members[team_name].append(user)
            if spec.role == Role.LEAD:
                self.leads[spec.team] = user
        # PBKDF2's million rounds take a quarter of a second per hash, most of the seed's time
        # if done per agent. The hash carries its salt, so one hash serves every demo agent,
        # who share the password anyway.
        hashed = make_password(self.password)
        User.objects.filter(pk__in=[agent.pk for agent in self.agents]).update(password=hashed)

    def _organizations(self) -> None:
        tiers, weights = zip(*data.TIER_WEIGHTS.items(), strict=True)
        for spec in self.rng.sample(data.ORGANIZATIONS, ORGANIZATIONS):
            organization = services.organization_create(
                name=spec.name,
                domains=spec.domains,
                tier=self.rng.choices(tiers, weights)[0],
                notes=self.rng.choice(data.ORGANIZATION_NOTES),
            )
            self.organizations.append(organization)
            self.countries[organization.pk] = spec.country
            self.clock.organizations[organization.pk] = self.now - timedelta(
                days=self.rng.randint(420, 1100), minutes=self.rng.randint(0, 600)
            )

    def _customers(self) -> None:
        rng = self.rng
        domains = {spec.name: spec.domains for spec in data.ORGANIZATIONS}
        taken: set[tuple[str, str]] = set()
        for i in range(CUSTOMERS):
            organization = None if i % 9 == 8 else rng.choice(self.organizations)
            while (name := (rng.choice(data.FIRST_NAMES), rng.choice(data.LAST_NAMES))) in taken:
                pass
            taken.add(name)
            first, last = name
            local = _ascii(f"{first}.{last}")
            if organization is None:
                emails = [f"{local}@{rng.choice(data.PERSONAL_DOMAINS)}"]
            else:
                own = domains[organization.name]
                emails = [f"{local}@{own[0] if rng.random() < 0.8 else own[-1]}"]
                if rng.random() < 0.1:  # also writes from home now and then
                    emails.append(
                        f"{_ascii(first)}{rng.randint(70, 99)}@{data.PERSONAL_DOMAINS[0]}"
                    )
            country = self.countries.get(organization.pk, "UK") if organization else "UK"
            work, mobile = data.PHONE_FORMATS["US" if country == "US" else "UK"]
            limit = 100 if country == "US" else 1000
            phones: list[tuple[str, str]] = []
            if rng.random() < 0.55:
                phones.append((work.format(rng.randrange(limit)), "work"))
            if rng.random() < 0.25:
                phones.append((mobile.format(rng.randrange(limit)), "mobile"))
            important = organization is not None and organization.tier in (
                OrganizationTier.GOLD,
                OrganizationTier.PLATINUM,
            )
            customer = services.customer_create(
                name=f"{first} {last}",
                emails=emails,
                phones=phones,
                is_vip=important and rng.random() < 0.5,
                notes=rng.choice(data.CUSTOMER_NOTES) if rng.random() < 0.3 else "",
            )
            self.customers.append(customer)
            since = self.clock.organizations.get(organization.pk) if organization else None
            self.clock.customers[customer.pk] = (
                since + timedelta(days=rng.randint(1, 340))
                if since
                else self.now - timedelta(days=rng.randint(70, 500))
            )

    # --- what ----------------------------------------------------------------------------

    def _plan(self) -> list[_CaseSpec]:
        """All cases up front, oldest first, so numbers grow with time and tasks add up."""
        rng = self.rng
        specs = [self._spec() for _ in range(CASES - MERGES - 3)]
        outage_at = (self.now - timedelta(days=12)).replace(hour=10, minute=12, second=0)
        templates = {t.title: t for t in data.CASE_TEMPLATES["Technical"]}
        outage = self._spec(
            created=outage_at, team="Technical", template=data.OUTAGE, final=S.CLOSED
        )
        outage.customer, outage.priority, outage.channel = None, Priority.URGENT, Channel.WEB
        outage.role, outage.misrouted, outage.assigned = "outage", False, True
        outage.path = [S.IN_PROGRESS, S.AWAITING_VENDOR, S.IN_PROGRESS, S.RESOLVED, S.CLOSED]
        specs.append(outage)
        effects = zip((25, 50), data.OUTAGE_EFFECTS, ("child", "caused_by"), strict=True)
        for minutes, title, role in effects:
            effect = self._spec(
                created=outage_at + timedelta(minutes=minutes),
                team="Technical",
                template=templates[title],
                final=S.CLOSED,
            )
            effect.priority, effect.role, effect.misrouted = Priority.HIGH, role, False
            effect.assigned, effect.path = True, [S.IN_PROGRESS, S.RESOLVED, S.CLOSED]
            specs.append(effect)
        specs.sort(key=lambda spec: spec.created)
        ordinary = [
            spec
            for spec in specs
            if not spec.role
            and not spec.misrouted
            and spec.customer is not None
            and spec.path not in ([], [S.CLOSED])
            and self.now - spec.created > timedelta(days=2)
        ]
        for spec in rng.sample(ordinary, MERGES):
            spec.duplicated = True
        # Tasks gather on open cases that have been worked for a while (the work of the coming
        # days), more in Billing and Technical.
        takers = [spec for spec in specs if spec.assigned and spec.path != [S.CLOSED]]
        weights = [
            {"Support": 2, "Billing": 3, "Technical": 3}[spec.team]
            * (1 if spec.path and spec.path[-1] in DONE else 6)
            * min(1.0, 0.1 + (self.now - spec.created).total_seconds() / (3 * 86400))
            for spec in takers
        ]
        placed = 0
        while placed < TASKS - STANDALONE_TASKS:
            spec = rng.choices(takers, weights)[0]
            if spec.tasks < MAX_TASKS_PER_CASE:
                spec.tasks += 1
                placed += 1
        return specs

    def _spec(
        self,
        *,
        created: datetime | None = None,
        team: str | None = None,
        template: data.CaseTemplate | None = None,
        final: str | None = None,
    ) -> _CaseSpec:
        rng = self.rng
        if created is None:
            # Recent days are busier than old ones, and most mail arrives in working hours.
            age = timedelta(days=DAYS * rng.random() ** 2) + timedelta(minutes=10)
            created = self.now - age
            if created.hour < 7 and created + timedelta(hours=8) < self.latest:
                created += timedelta(hours=8)
        team = team or rng.choices(list(TEAM_WEIGHTS), list(TEAM_WEIGHTS.values()))[0]
        template = template or rng.choice(data.CASE_TEMPLATES[team])
        if final is None:
            age_days = (self.now - created).total_seconds() / 86400
            weights = next(w for limit, w in FINAL_STATUS_WEIGHTS if age_days < limit)
            final = rng.choices(list(weights), list(weights.values()))[0]
        customer = rng.choice(self.customers)
        priority = rng.choices(list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values()))[0]
        if customer.is_vip and priority in (Priority.LOW, Priority.NORMAL) and rng.random() < 0.5:
            priority = Priority.HIGH
        path = _status_path(rng, final, settled=self.now - created > timedelta(days=1))
        return _CaseSpec(
            created=created,
            team=team,
            template=template,
            customer=customer,
            priority=priority,
            channel=rng.choices(list(CHANNEL_WEIGHTS), list(CHANNEL_WEIGHTS.values()))[0],
            path=path,
            assigned=path != [S.CLOSED] and (bool(path) or rng.random() < 0.5),
            misrouted=team != "Support" and rng.random() < 0.12,
        )

    # --- how it went ---------------------------------------------------------------------

    def _case(self, spec: _CaseSpec) -> None:
        """Create the case, then play its history step by step in time order."""
        rng = self.rng
        team = self.teams["Support" if spec.misrouted else spec.team]
        creator = None
        if spec.role == "outage":
            creator = self.leads[spec.team]
        elif spec.channel in (Channel.PHONE, Channel.CHAT):  # an agent took the call or chat
            creator = rng.choice(self.members[team.name])
        sentiment = rng.choices(list(SENTIMENT_WEIGHTS), list(SENTIMENT_WEIGHTS.values()))[0]
        case = services.case_create(
            actor=creator,
            title=spec.template.title,
            description=self._description(spec),
            team=team,
            type=spec.template.type,
            priority=spec.priority,
            sentiment=Sentiment.NEGATIVE if spec.template.type == CaseType.COMPLAINT else sentiment,
            channel=spec.channel,
            customer=spec.customer,
        )
        self.clock.happened(spec.created, case)
        self.cases.append((spec, case))
        if spec.role == "outage":
            self.outage = case

        low, high = TRIAGE_HOURS[spec.priority]
        triage = min(
            spec.created + _hours(rng.uniform(low, high)),
            spec.created + (self.latest - spec.created) * 0.3,
        )
        steps: list[_Step] = []
        if spec.assigned:
            steps += self._assignment(case, spec, triage, creator)
        times = self._status_times(spec.path, triage)
        for old, new, when in zip([S.NEW, *spec.path], spec.path, times, strict=False):
            steps.append(_Step(when, partial(self._change_status, case, old, new)))
        finished = bool(spec.path) and spec.path[-1] in DONE
        resolved = [when for status, when in zip(spec.path, times, strict=True) if status in DONE]
        work_end = resolved[0] if finished else self.latest

        def meanwhile() -> datetime:
            return _between(rng, triage, work_end)

        vip = spec.customer is not None and spec.customer.is_vip
        if spec.assigned and rng.random() < 0.45:
            tags = [*spec.template.tags, *(["vip"] if vip else [])]
            later = triage + timedelta(minutes=rng.randint(1, 20))
            steps.append(_Step(min(later, work_end), partial(self._tag, case, tags)))
        notes = rng.choices((0, 1, 2, 3), (48, 36, 13, 3))[0] if spec.assigned else 0
        steps += [_Step(meanwhile(), partial(self._note, case)) for _ in range(notes)]
        if rng.random() < (0.6 if vip else 0.2):
            steps.append(_Step(meanwhile(), partial(self._watch, case)))
        if spec.assigned and spec.priority in ESCALATION and rng.random() < 0.08:
            steps.append(_Step(meanwhile(), partial(self._escalate, case)))
        if spec.assigned and rng.random() < 0.06:
            steps.append(_Step(meanwhile(), partial(self._hand_over, case)))
        if spec.role == "child":
            steps.append(_Step(triage, partial(self._set_parent, case)))
        if spec.role == "caused_by":
            steps.append(_Step(triage, partial(self._link_to_outage, case)))
        for subject, checklist in rng.sample(data.CASE_TASKS[spec.team], spec.tasks):
            steps += self._task_steps(case, subject, checklist, triage, work_end, done=finished)
        self._play(steps)
        if spec.duplicated:
            self._duplicate(case, spec, times[0])

    def _play(self, steps: list[_Step]) -> None:
        """Run the steps in time order (ties in the order they were planned)."""
        for step in sorted(steps, key=lambda step: step.when):
            touched = step.run(step.when)
            self.clock.happened(step.when, *touched)

    def _status_times(self, path: list[str], start: datetime) -> list[datetime]:
        """Believable gaps between the statuses of `path`, squeezed to end before now."""
        offsets, total = [], 0.0
        for old, new in zip([S.NEW, *path], path, strict=False):
            total += self.rng.uniform(*_gap_hours(old, new))
            offsets.append(total)
        room = (self.latest - start).total_seconds() / 3600 * 0.95
        scale = min(1.0, room / total) if total else 1.0
        return [start + _hours(offset * scale) for offset in offsets]

    def _assignment(
        self, case: Case, spec: _CaseSpec, triage: datetime, creator: User | None
    ) -> list[_Step]:
        if not spec.misrouted:
            return [_Step(triage, partial(self._assign, case, creator=creator))]
        mover = self.rng.choice(self.members["Support"])
        later = triage + timedelta(minutes=self.rng.randint(5, 90))
        return [
            _Step(triage, partial(self._move, case, mover, self.teams[spec.team])),
            _Step(min(later, self.latest), partial(self._assign, case, creator=None)),
        ]

    def _move(self, case: Case, mover: User, team: Team, when: datetime) -> Iterable[Case]:
        """Written to Support, it belongs elsewhere: the team there picks an agent."""
        services.case_assign(actor=mover, case=case, assignee=None, team=team)
        return (case,)

    def _assign(self, case: Case, when: datetime, *, creator: User | None) -> Iterable[Case]:
        """Whoever took the call keeps it; else round-robin, a lead's pick, or an agent's."""
        rng = self.rng
        members, lead = self.members[case.team.name], self.leads[case.team.name]
        if creator in members:
            services.case_assign(actor=creator, case=case, assignee=creator)
            return (case,)
        how = rng.random()
        if how < 0.5:
            try:
                services.case_assign_round_robin(actor=None, case=case)
            except NoAgentAvailable:
                pass  # everybody is away, paused or full: the lead picks below
            else:
                return (case,)
        agent = rng.choice(members)
        services.case_assign(actor=agent if how > 0.85 else lead, case=case, assignee=agent)
        return (case,)

    def _actor(self, case: Case) -> User:
        return case.assignee or self.leads[case.team.name]

    def _change_status(self, case: Case, old: str, new: str, when: datetime) -> Iterable[Case]:
        if new == S.CLOSED and old == S.RESOLVED:
            actor = None  # closed automatically when the customer did not object
        elif new == S.IN_PROGRESS and old in (S.AWAITING_CUSTOMER, *DONE):
            actor = None  # the customer wrote back
        else:
            actor = self._actor(case)
        services.case_change_status(actor=actor, case=case, status=new, now=when)
        if actor is not None:
            self.clock.responded(case, when)
        return (case,)

    def _tag(self, case: Case, names: list[str], when: datetime) -> Iterable[Case]:
        services.case_set_tags(actor=self._actor(case), case=case, names=names)
        return (case,)

    def _note(self, case: Case, when: datetime) -> Iterable[Case]:
        rng = self.rng
        author = self._actor(case)
        if rng.random() < 0.25:
            colleagues = [m for m in self.members[case.team.name] if m != author]
            other = rng.choice(colleagues or [u for u in self.leads.values() if u != author])
            text = rng.choice(data.MENTION_NOTES)
        else:
            other, text = author, rng.choice(data.NOTES)
        body = text.format(
            mention=other.email.split("@")[0],
            org=case.organization or "this customer",
            ref=rng.randint(1000, 9999),
        )
        note = services.case_add_note(actor=author, case=case, body=body)
        self.clock.notes[note.pk] = when
        return (case,)

    def _watch(self, case: Case, when: datetime) -> Iterable[Case]:
        lead = self.leads[case.team.name]
        watcher = lead if self.rng.random() < 0.5 else self.rng.choice(self.members[case.team.name])
        services.case_add_watcher(actor=watcher, case=case, watcher=watcher)
        return (case,)

    def _escalate(self, case: Case, when: datetime) -> Iterable[Case]:
        if case.priority in ESCALATION:
            services.case_update(
                actor=self._actor(case), case=case, priority=ESCALATION[case.priority]
            )
        return (case,)

    def _hand_over(self, case: Case, when: datetime) -> Iterable[Case]:
        """The assignee goes on holiday; the lead gives the case to a colleague."""
        others = [m for m in self.members[case.team.name] if m != case.assignee]
        if case.assignee is not None and others:
            lead = self.leads[case.team.name]
            services.case_assign(actor=lead, case=case, assignee=self.rng.choice(others))
        return (case,)

    def _set_parent(self, case: Case, when: datetime) -> Iterable[Case]:
        services.case_set_parent(actor=self.leads["Technical"], case=case, parent=self.outage)
        return (case,)

    def _link_to_outage(self, case: Case, when: datetime) -> Iterable[Case]:
        assert self.outage is not None  # noqa: S101 - planned before its effects
        link = services.case_link(
            actor=self.leads["Technical"], case=case, other=self.outage, kind=LinkKind.CAUSED_BY
        )
        self.clock.links[link.pk] = when
        return (case, self.outage)

    def _duplicate(self, case: Case, spec: _CaseSpec, answered: datetime) -> None:
        """The customer writes again before anyone answered; the lead merges the two."""
        rng = self.rng
        written = spec.created + (answered - spec.created) * rng.uniform(0.2, 0.6)
        merged = written + (answered - written) * rng.uniform(0.2, 0.9)
        again = services.case_create(
            actor=None,
            title=spec.template.title,
            description=data.DUPLICATE_DESCRIPTION.format(first=_first_name(spec.customer)),
            team=self.teams[spec.team],
            type=spec.template.type,
            priority=spec.priority,
            channel=Channel.WEB if spec.channel == Channel.EMAIL else Channel.EMAIL,
            customer=spec.customer,
        )
        self.clock.happened(written, again)
        self.cases.append((spec, again))
        services.case_merge(actor=self.leads[spec.team], source=again, target=case)
        self.clock.happened(merged, again, case)
        self.clock.cases[again.pk]["closed_at"] = merged

    # --- tasks ---------------------------------------------------------------------------

    def _task_steps(
        self,
        case: Case,
        subject: str,
        checklist: tuple[str, ...],
        start: datetime,
        end: datetime,
        *,
        done: bool,
    ) -> list[_Step]:
        """A task on the case: created while it is worked, done before it is resolved."""
        rng = self.rng
        created = _between(rng, start, end)
        finished = _between(rng, created, end) if done or rng.random() < 0.2 else None
        started = None
        if finished is not None and rng.random() < 0.2:
            started = _between(rng, created, finished)
        elif finished is None and rng.random() < 0.25:
            started = _between(rng, created, end)
        plan = _TaskPlan(subject, checklist, created, started, finished)
        steps = [_Step(created, partial(self._task_create, case, plan))]
        if started is not None:
            steps.append(_Step(started, partial(self._task_start, case, plan)))
        if finished is not None:
            steps.append(_Step(finished, partial(self._task_finish, case, plan)))
        return steps

    def _task_create(self, case: Case, plan: _TaskPlan, when: datetime) -> Iterable[Case]:
        rng = self.rng
        pick = rng.random()
        assignee = rng.choice(self.members[case.team.name])  # tasks go to the case's team
        if pick < 0.65 and case.assignee is not None:
            assignee = case.assignee
        elif pick > 0.9 and plan.started is plan.finished is None:
            assignee = None  # waits for someone to take it
        due = self._due(plan.created, after=True) if plan.finished else self._due(self.now)
        plan.task = services.task_create(
            actor=self._actor(case),
            subject=plan.subject,
            case=case,
            assignee=assignee,
            priority=case.priority,
            category=data.TASK_CATEGORY[case.team.name],
            due_at=due,
            remind_at=due - timedelta(hours=1) if rng.random() < 0.3 else None,
            checklist=plan.checklist,
        )
        self.task_count += 1
        self.clock.task_changed(plan.task, when)
        return (case,)

    def _task_start(self, case: Case | None, plan: _TaskPlan, when: datetime) -> Iterable[Case]:
        task = plan.task
        assert task is not None  # noqa: S101 - created in an earlier step
        actor = task.assignee or task.created_by
        if plan.checklist and plan.finished is None:  # half-way through, for a while now
            ticked = self.rng.randrange(len(plan.checklist))
            items = [(text, i < ticked) for i, text in enumerate(plan.checklist)]
            services.task_set_checklist(actor=actor, task=task, items=items)
        services.task_change_status(actor=actor, task=task, status=TaskStatus.IN_PROGRESS)
        self.clock.task_changed(task, when)
        return (case,) if case else ()

    def _task_finish(self, case: Case | None, plan: _TaskPlan, when: datetime) -> Iterable[Case]:
        task = plan.task
        assert task is not None  # noqa: S101 - created in an earlier step
        actor = task.assignee or task.created_by
        if plan.checklist:
            items = [(text, True) for text in plan.checklist]
            services.task_set_checklist(actor=actor, task=task, items=items)
        status = TaskStatus.CLOSED if self.rng.random() < 0.2 else TaskStatus.RESOLVED
        services.task_change_status(actor=actor, task=task, status=status)
        self.clock.task_changed(task, when, completed=True)
        return (case,) if case else ()

    def _due(self, around: datetime, *, after: bool = False) -> datetime:
        """A working-hours deadline a few days either side of `around` (or `after` it)."""
        day = around + timedelta(days=self.rng.randint(1 if after else -3, 7))
        return day.replace(
            hour=self.rng.randint(9, 16), minute=self.rng.choice((0, 30)), second=0, microsecond=0
        )

    def _standalone_tasks(self) -> None:
        """Tasks on no case: team chores and reminders, in their assignees' task lists."""
        rng = self.rng
        leads = list(self.leads.values())
        for _ in range(STANDALONE_TASKS):
            subject, checklist = rng.choice(data.STANDALONE_TASKS)
            customer = rng.choice(self.customers)
            organization = rng.choice(self.organizations)
            subject = subject.format(customer=customer, org=organization)
            assignee = rng.choice(self.agents)
            created = self.now - timedelta(days=rng.uniform(0.1, 14))
            finished = _between(rng, created, self.latest) if rng.random() < 0.3 else None
            started = (
                _between(rng, created, finished or self.latest) if rng.random() < 0.4 else None
            )
            if started is finished is None and rng.random() < 0.3:
                assignee = None  # on the team's list until someone takes it
            plan = _TaskPlan(subject, checklist, created, started, finished)
            due = self._due(created, after=True) if finished else self._due(self.now)
            plan.task = services.task_create(
                actor=assignee or rng.choice(leads),
                subject=subject,
                assignee=assignee,
                priority=rng.choices(list(PRIORITY_WEIGHTS), list(PRIORITY_WEIGHTS.values()))[0],
                due_at=due,
                checklist=checklist,
            )
            self.task_count += 1
            self.clock.task_changed(plan.task, created)
            if started is not None:
                self._task_start(None, plan, started)
            if finished is not None:
                self._task_finish(None, plan, finished)

    # --- between cases -------------------------------------------------------------------

    def _links(self) -> None:
        """Agents notice that some cases are about the same thing and link them."""
        rng = self.rng
        by_title: dict[str, list[tuple[_CaseSpec, Case]]] = defaultdict(list)
        for spec, case in self.cases:
            if not spec.role and case.merged_into_id is None:
                by_title[case.title].append((spec, case))
        pairs = [
            (first, second)
            for group in by_title.values()
            for first, second in zip(group, group[1:], strict=False)
            if second[0].created - first[0].created < timedelta(days=10)
        ]
        for (_, first), (spec, second) in rng.sample(pairs, min(4, len(pairs))):
            same = (
                first.organization_id is not None
                and first.organization_id == second.organization_id
            )
            when = min(spec.created + _hours(rng.uniform(1, 30)), self.latest)
            link = services.case_link(
                actor=self._actor(second),
                case=second,
                other=first,
                kind=LinkKind.DUPLICATE if same else LinkKind.RELATED,
            )
            self.clock.happened(when, first, second)
            self.clock.links[link.pk] = when

    def _description(self, spec: _CaseSpec) -> str:
        rng = self.rng
        organization = spec.customer.organization if spec.customer else None
        day = spec.created - timedelta(days=rng.randint(1, 10))
        later = spec.created + timedelta(days=rng.randint(5, 30))
        return spec.template.description.format(
            first=_first_name(spec.customer),
            org=organization or "our company",
            ref=rng.randint(10000, 99999),
            count=rng.randint(3, 40),
            amount=f"€{rng.randint(200, 9000):,}.00",
            day=f"{day.day} {day:%B}",
            later=f"{later.day} {later:%B}",
        )


def _status_path(rng: random.Random, final: str, *, settled: bool = True) -> list[str]:
    """The statuses a case went through after `new` to reach `final`, along allowed moves.

    Only a `settled` case (older than a day) had time to go back and forth.
    """
    if final == S.NEW:
        return []
    if final == S.CLOSED and rng.random() < 0.05:
        return [S.CLOSED]  # spam or an auto-reply, closed without work
    work = [S.AWAITING_CUSTOMER, S.IN_PROGRESS] if rng.random() < 0.1 else [S.IN_PROGRESS]
    while settled and rng.random() < 0.1 and len(work) < 6:
        work += [rng.choice((S.AWAITING_CUSTOMER, S.AWAITING_CUSTOMER, S.AWAITING_VENDOR)),
                 S.IN_PROGRESS]  # fmt: skip
    if final in (S.IN_PROGRESS, S.AWAITING_CUSTOMER, S.AWAITING_VENDOR):
        return work if final == S.IN_PROGRESS else [*work, final]
    if rng.random() < 0.08:
        work.append(S.AWAITING_CUSTOMER)  # no answer from the customer: resolved anyway
    path = [*work, S.RESOLVED]
    if settled and rng.random() < 0.1:
        path += [S.IN_PROGRESS, S.RESOLVED]  # the fix did not hold
    if final == S.RESOLVED:
        return path
    if rng.random() < 0.45:
        return [*work, S.CLOSED]  # answered and closed in one go
    path.append(S.CLOSED)
    if rng.random() < 0.04:
        path += [S.IN_PROGRESS, S.RESOLVED, S.CLOSED]  # reopened within the reopen window
    return path


def _gap_hours(old: str, new: str) -> tuple[float, float]:
    """How long a case typically stays in `old` before it becomes `new`, in hours."""
    if old == S.NEW:
        return (0.1, 3)
    if new == S.AWAITING_CUSTOMER or new == S.AWAITING_VENDOR:
        return (1, 24)
    if old == S.AWAITING_CUSTOMER:
        return (3, 72)
    if old == S.AWAITING_VENDOR:
        return (24, 120)
    if old == S.RESOLVED and new == S.CLOSED:
        return (48, 120)
    if old in DONE:
        return (12, 72)  # reopened: well inside the reopen window
    return (2, 96)


def _hours(hours: float) -> timedelta:
    return timedelta(hours=hours)


def _between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    return start + (end - start) * rng.random() if end > start else start


def _ascii(text: str) -> str:
    """`Renée O'Brien` → `renee.obrien`, for the local part of an address."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return "".join(c for c in plain.lower() if c.isalnum() or c == ".")


def _first_name(customer: Customer | None) -> str:
    return customer.name.split()[0] if customer else "The support team"
