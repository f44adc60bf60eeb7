"""Factories for the cases app. They build through the services where the services add
behaviour (numbers, change numbers, timeline), so tests see what users would see."""

from __future__ import annotations

import factory

from cases import services
from cases.models import Case, Customer, Organization, Task
from crm import services as crm_services
from crm.choices import Role
from crm.models import Team, User
from tests.crm.factories import DEFAULT_PASSWORD, TeamFactory

__all__ = ["DEFAULT_PASSWORD", "make_agent", "TeamFactory"]


def make_agent(
    *, team: Team | None = None, role: str = Role.AGENT, email: str | None = None, **extra
) -> User:
    """An agent (or lead/admin) who can sign in, member of `team` if given."""
    make_agent.counter += 1
    user, _ = crm_services.agent_upsert(
        email=email or f"agent{make_agent.counter}@support.example",
        password=DEFAULT_PASSWORD,
        team=team,
        role=role,
        first_name=extra.pop("first_name", f"Agent{make_agent.counter}"),
        last_name=extra.pop("last_name", "Tester"),
    )
    if extra:
        for key, value in extra.items():
            setattr(user.profile, key, value)
        user.profile.save()
    return user


make_agent.counter = 0


class OrganizationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n:03d} Ltd")

    @classmethod
    def _create(cls, model_class, *args, domains=(), **kwargs) -> Organization:
        return services.organization_create(domains=domains, **kwargs)


class CustomerFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Customer

    name = factory.Faker("name")
    emails = factory.Sequence(lambda n: [f"customer{n}@mail.example"])

    @classmethod
    def _create(cls, model_class, *args, **kwargs) -> Customer:
        return services.customer_create(**kwargs)


class CaseFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Case

    title = factory.Faker("sentence", nb_words=5)
    team = factory.SubFactory(TeamFactory)
    actor = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs) -> Case:
        return services.case_create(**kwargs)


class TaskFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Task

    subject = factory.Faker("sentence", nb_words=4)
    actor = None

    @classmethod
    def _create(cls, model_class, *args, **kwargs) -> Task:
        return services.task_create(**kwargs)


def make_rule(name: str, *, trigger: str, conditions=(), actions=(), **fields):
    """A workflow rule with its rows, validated as admin validates them (see
    `workflow_rule_create`). A condition is (field, operator, value[, group])."""
    from cases.workflow.rules import workflow_rule_create

    return workflow_rule_create(
        name=name, trigger=trigger, conditions=conditions, actions=actions, **fields
    )
