"""Customers and organizations. Customers live in the one customer book every agent syncs."""

from __future__ import annotations

import re
from collections.abc import Iterable

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction

from cases.errors import CaseError, DuplicateEmail
from cases.models import Customer, CustomerEmail, CustomerPhone, Organization, OrganizationDomain
from crm import changes
from crm.db import equals_ignoring_case

DOMAIN = re.compile(r"^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
UPDATABLE_FIELDS = ("name", "organization", "is_vip", "notes")


def normalize_address(address: str) -> str:
    address = address.strip().lower()
    try:
        validate_email(address)
    except ValidationError as exc:
        raise CaseError(f"“{address}” is not a valid email address.", field="emails") from exc
    return address


def _ensure_unused(address: str, *, customer: Customer | None = None) -> None:
    owner = (
        CustomerEmail.objects.filter(equals_ignoring_case("email", address))
        .select_related("customer")
        .first()
    )
    if owner is not None and owner.customer_id != (customer.pk if customer else None):
        raise DuplicateEmail(f"{address} already belongs to {owner.customer}.", field="emails")


def organization_for_address(address: str) -> Organization | None:
    domain = address.rsplit("@", 1)[-1].lower()
    row = OrganizationDomain.objects.filter(domain=domain).select_related("organization").first()
    return row.organization if row else None


@transaction.atomic
def customer_touch(*, customer: Customer, fields: Iterable[str] = ()) -> None:
    """Save with a fresh number in the customer book, so every agent's synced contacts see
    the change (also after its addresses or phones changed)."""
    changes.item_touch(customer, changes.customer_book())
    customer.save(update_fields=[*fields, "change_container", "change_seq", "updated_at"])


@transaction.atomic
def customer_set_phones(*, customer: Customer, phones: Iterable[tuple[str, str]]) -> None:
    customer.phones.all().delete()
    CustomerPhone.objects.bulk_create(
        CustomerPhone(customer=customer, number=number, kind=kind) for number, kind in phones
    )
    customer_touch(customer=customer)


@transaction.atomic
def customer_create(
    *,
    name: str,
    emails: Iterable[str] = (),
    phones: Iterable[tuple[str, str] | str] = (),
    organization: Organization | None = None,
    is_vip: bool = False,
    notes: str = "",
) -> Customer:
    """Create a customer; without an organization, the first address's domain may name one."""
    addresses = list(dict.fromkeys(normalize_address(a) for a in emails))
    for address in addresses:
        _ensure_unused(address)
    if not name.strip():
        name = addresses[0].split("@")[0] if addresses else ""
    if not name:
        raise CaseError("A customer needs a name or an email address.", field="name")
    if organization is None and addresses:
        organization = organization_for_address(addresses[0])
    customer = Customer(name=name.strip(), organization=organization, is_vip=is_vip, notes=notes)
    changes.item_touch(customer, changes.customer_book())
    customer.save()
    CustomerEmail.objects.bulk_create(
        CustomerEmail(customer=customer, email=address, is_primary=i == 0)
        for i, address in enumerate(addresses)
    )
    CustomerPhone.objects.bulk_create(
        CustomerPhone(customer=customer, number=p, kind="work")
        if isinstance(p, str)
        else CustomerPhone(customer=customer, number=p[0], kind=p[1])
        for p in phones
    )
    return customer


@transaction.atomic
def customer_update(*, customer: Customer, **changes_: object) -> Customer:
    unknown = set(changes_) - set(UPDATABLE_FIELDS)
    if unknown:
        raise CaseError(f"Cannot change {', '.join(sorted(unknown))} here.")
    changed = [f for f, v in changes_.items() if getattr(customer, f) != v]
    for field in changed:
        setattr(customer, field, changes_[field])
    if changed:
        customer.full_clean()
        customer_touch(customer=customer, fields=changed)
    return customer


@transaction.atomic
def customer_add_email(*, customer: Customer, email: str, primary: bool = False) -> CustomerEmail:
    address = normalize_address(email)
    _ensure_unused(address, customer=customer)
    primary = primary or not customer.emails.filter(is_primary=True).exists()
    if primary:
        customer.emails.update(is_primary=False)
    row, _ = CustomerEmail.objects.update_or_create(
        customer=customer, email=address, defaults={"is_primary": primary}
    )
    customer_touch(customer=customer)
    return row


@transaction.atomic
def customer_remove_email(*, customer: Customer, email: str) -> None:
    customer.emails.filter(equals_ignoring_case("email", email)).delete()
    remaining = customer.emails.order_by("pk")
    if remaining.exists() and not remaining.filter(is_primary=True).exists():
        remaining.filter(pk=remaining.first().pk).update(is_primary=True)
    customer_touch(customer=customer)


@transaction.atomic
def customer_delete(*, customer: Customer) -> None:
    """Delete and leave a tombstone, so synced address books drop the contact."""
    if customer.change_container_id is not None:
        changes.item_leave(customer, customer.change_container)
    customer.delete()


def normalize_domain(domain: str) -> str:
    value = domain.strip().lower().removeprefix("@")
    if not DOMAIN.match(value):
        raise CaseError(f"“{domain}” is not an email domain.", field="domains")
    return value


@transaction.atomic
def organization_set_domains(*, organization: Organization, domains: Iterable[str]) -> list[str]:
    wanted = sorted({normalize_domain(d) for d in domains})
    taken = OrganizationDomain.objects.filter(domain__in=wanted).exclude(organization=organization)
    for row in taken.select_related("organization"):
        raise CaseError(f"{row.domain} already belongs to {row.organization}.", field="domains")
    organization.domains.exclude(domain__in=wanted).delete()
    existing = set(organization.domains.values_list("domain", flat=True))
    OrganizationDomain.objects.bulk_create(
        OrganizationDomain(organization=organization, domain=d) for d in wanted if d not in existing
    )
    return wanted


@transaction.atomic
def organization_create(
    *, name: str, domains: Iterable[str] = (), tier: str = "standard", notes: str = ""
) -> Organization:
    if Organization.objects.filter(name__iexact=name.strip()).exists():
        raise CaseError(f"An organization named {name} exists already.", field="name")
    organization = Organization(name=name.strip(), tier=tier, notes=notes)
    organization.full_clean()
    organization.save()
    organization_set_domains(organization=organization, domains=domains)
    return organization
