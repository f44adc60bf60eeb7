"""/api/v1/customers and /api/v1/organizations. Every agent sees all of them."""

from __future__ import annotations

from django.db import transaction
from django.db.models import QuerySet
from rest_framework import viewsets

from cases import selectors, services
from cases.api.serializers import CustomerSerializer, OrganizationSerializer
from cases.filters import CustomerFilter, OrganizationFilter
from cases.models import Customer, Organization


class CustomerViewSet(viewsets.ModelViewSet):
    """Customers; `q` searches name, addresses and organization."""

    serializer_class = CustomerSerializer
    filterset_class = CustomerFilter
    ordering_fields = ["name", "created_at", "updated_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Customer]:
        query = self.request.query_params.get("q", "").strip()
        user = self.request.user
        customers = (
            selectors.customer_search(user=user, query=query)
            if query
            else selectors.customer_list(user=user)
        )
        return customers.select_related("organization").prefetch_related("emails", "phones")

    def perform_create(self, serializer: CustomerSerializer) -> None:
        data = dict(serializer.validated_data)
        phones = [(p["number"], p.get("kind", "work")) for p in data.pop("phones", [])]
        customer = services.customer_create(phones=phones, **data)
        serializer.instance = self.get_queryset().get(pk=customer.pk)

    def perform_update(self, serializer: CustomerSerializer) -> None:
        customer, data = serializer.instance, dict(serializer.validated_data)
        with transaction.atomic():
            emails = data.pop("emails", None)
            phones = data.pop("phones", None)
            services.customer_update(customer=customer, **data)
            if emails is not None:
                wanted = [e.strip().lower() for e in emails]
                for current in customer.emails.exclude(email__in=wanted):
                    services.customer_remove_email(customer=customer, email=current.email)
                for i, address in enumerate(wanted):
                    services.customer_add_email(customer=customer, email=address, primary=i == 0)
            if phones is not None:
                services.customer_set_phones(
                    customer=customer,
                    phones=[(p["number"], p.get("kind", "work")) for p in phones],
                )
        serializer.instance = self.get_queryset().get(pk=customer.pk)

    def perform_destroy(self, customer: Customer) -> None:
        services.customer_delete(customer=customer)


class OrganizationViewSet(viewsets.ModelViewSet):
    """Organizations; `q` searches name and domains."""

    serializer_class = OrganizationSerializer
    filterset_class = OrganizationFilter
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]
    http_method_names = ["get", "post", "put", "patch", "delete", "head", "options"]

    def get_queryset(self) -> QuerySet[Organization]:
        organizations = selectors.organization_list(user=self.request.user)
        query = self.request.query_params.get("q", "").strip()
        for term in query.split():
            organizations = organizations.filter(name__icontains=term) | organizations.filter(
                domains__domain__icontains=term
            )
        return organizations.distinct().prefetch_related("domains")

    def perform_create(self, serializer: OrganizationSerializer) -> None:
        organization = services.organization_create(**serializer.validated_data)
        serializer.instance = self.get_queryset().get(pk=organization.pk)

    def perform_update(self, serializer: OrganizationSerializer) -> None:
        organization, data = serializer.instance, dict(serializer.validated_data)
        domains = data.pop("domains", None)
        with transaction.atomic():
            for field, value in data.items():
                setattr(organization, field, value)
            organization.full_clean()
            organization.save()
            if domains is not None:
                services.organization_set_domains(organization=organization, domains=domains)
        serializer.instance = self.get_queryset().get(pk=organization.pk)
