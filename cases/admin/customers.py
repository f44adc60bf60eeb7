"""Customers and organizations in the admin."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from cases import selectors, services
from cases.errors import CaseError
from cases.models import (
    Customer,
    CustomerEmail,
    CustomerPhone,
    Organization,
    OrganizationDomain,
)
from cases.services.customers import UPDATABLE_FIELDS as CUSTOMER_FIELDS
from cases.services.customers import normalize_address, normalize_domain
from crm.admin import (
    ScopedAdminMixin,
    ServiceInlineFormSet,
    adopt,
)
from crm.db import equals_ignoring_case
from crm.models import User

# --- customers and organizations ----------------------------------------------------------------


class CustomerEmailForm(forms.ModelForm):
    class Meta:
        model = CustomerEmail
        fields = ["email", "is_primary"]

    def clean_email(self) -> str:
        try:
            address = normalize_address(self.cleaned_data["email"])
        except CaseError as exc:
            raise forms.ValidationError(exc.message) from exc
        owner = (
            CustomerEmail.objects.filter(equals_ignoring_case("email", address))
            .exclude(customer_id=self.instance.customer_id)
            .select_related("customer")
            .first()
        )
        if owner is not None:
            raise forms.ValidationError(f"{address} already belongs to {owner.customer}.")
        return address


class CustomerEmailFormSet(ServiceInlineFormSet):
    """Addresses through `customer_add_email` / `customer_remove_email` (new change number)."""

    def save_through_services(self, actor: User) -> None:
        customer = self.instance
        for form in self.deleted_forms:
            if form.instance.pk:
                services.customer_remove_email(customer=customer, email=form.initial["email"])
                self.deleted_objects.append(form.instance)
        for form in sorted(self.kept_forms(), key=lambda f: f.cleaned_data.get("is_primary")):
            if not form.has_changed():
                continue
            if form.instance.pk and "email" in form.changed_data:
                services.customer_remove_email(customer=customer, email=form.initial["email"])
            row = services.customer_add_email(
                customer=customer,
                email=form.cleaned_data["email"],
                primary=form.cleaned_data.get("is_primary", False),
            )
            if form.instance.pk:
                self.changed_objects.append((row, form.changed_data))
            else:
                self.new_objects.append(row)


class CustomerPhoneFormSet(ServiceInlineFormSet):
    def save_through_services(self, actor: User) -> None:
        self.save()
        if self.new_objects or self.changed_objects or self.deleted_objects:
            services.customer_touch(customer=self.instance)


class CustomerEmailInline(admin.TabularInline):
    model = CustomerEmail
    form = CustomerEmailForm
    formset = CustomerEmailFormSet
    extra = 1


class CustomerPhoneInline(admin.TabularInline):
    model = CustomerPhone
    formset = CustomerPhoneFormSet
    fields = ["number", "kind"]
    extra = 1


@admin.register(Customer)
class CustomerAdmin(ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "primary_email", "organization", "is_vip", "case_count", "updated_at"]
    ordering = ["name", "pk"]
    list_filter = ["is_vip", "organization__tier"]
    search_fields = ["name", "emails__email", "organization__name"]
    autocomplete_fields = ["organization"]
    list_select_related = ["organization"]
    fields = ["name", "organization", "is_vip", "notes", "change_seq", "created_at", "updated_at"]
    readonly_fields = ["change_seq", "created_at", "updated_at"]
    inlines = [CustomerEmailInline, CustomerPhoneInline]

    def visible(self, request: HttpRequest) -> QuerySet[Customer]:
        return (
            selectors.customer_list(user=request.user)
            .annotate(case_count=Count("cases"))
            .prefetch_related("emails")
        )

    @admin.display(description="Email")
    def primary_email(self, customer: Customer) -> str:
        emails = list(customer.emails.all())
        return emails[0].email if emails else "—"

    @admin.display(description="Cases", ordering="case_count")
    def case_count(self, customer: Customer) -> int:
        return customer.case_count

    def save_model(
        self, request: HttpRequest, obj: Customer, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            fresh = Customer.objects.get(pk=obj.pk)
            changed = {f: form.cleaned_data[f] for f in CUSTOMER_FIELDS if f in form.changed_data}
            services.customer_update(customer=fresh, **changed)
            obj.refresh_from_db()
        # A new customer is created in save_related, together with its addresses and phones.

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        if change:
            super().save_related(request, form, formsets, change)
            return
        by_model = {formset.model: formset for formset in formsets}
        email_rows = by_model[CustomerEmail].kept_forms() if CustomerEmail in by_model else []
        phone_rows = by_model[CustomerPhone].kept_forms() if CustomerPhone in by_model else []
        email_rows.sort(key=lambda f: not f.cleaned_data.get("is_primary"))
        data = form.cleaned_data
        customer = services.customer_create(
            name=data["name"],
            emails=[f.cleaned_data["email"] for f in email_rows],
            phones=[(f.cleaned_data["number"], f.cleaned_data["kind"]) for f in phone_rows],
            organization=data.get("organization"),
            is_vip=data.get("is_vip", False),
            notes=data.get("notes", ""),
        )
        adopt(form.instance, customer)
        for model, formset in by_model.items():
            formset.new_objects = list(model.objects.filter(customer=customer))
            formset.changed_objects, formset.deleted_objects = [], []

    def delete_model(self, request: HttpRequest, obj: Customer) -> None:
        services.customer_delete(customer=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Customer]) -> None:
        self.delete_each(request, queryset, lambda c: services.customer_delete(customer=c))


class OrganizationDomainForm(forms.ModelForm):
    class Meta:
        model = OrganizationDomain
        fields = ["domain"]

    def clean_domain(self) -> str:
        try:
            return normalize_domain(self.cleaned_data["domain"])
        except CaseError as exc:
            raise forms.ValidationError(exc.message) from exc


class OrganizationDomainFormSet(ServiceInlineFormSet):
    """The domains are written at once by `organization_set_domains`."""

    def save_through_services(self, actor: User) -> None:
        if not any(form.has_changed() for form in self.forms) and not self.deleted_forms:
            return
        before = set(self.instance.domains.values_list("domain", flat=True))
        wanted = services.organization_set_domains(
            organization=self.instance,
            domains=[f.cleaned_data["domain"] for f in self.kept_forms()],
        )
        rows = {row.domain: row for row in self.instance.domains.all()}
        self.new_objects.extend(rows[d] for d in wanted if d not in before)
        self.deleted_objects.extend(OrganizationDomain(domain=d) for d in before - set(wanted))


class OrganizationDomainInline(admin.TabularInline):
    model = OrganizationDomain
    form = OrganizationDomainForm
    formset = OrganizationDomainFormSet
    extra = 1


class OrganizationForm(forms.ModelForm):
    class Meta:
        model = Organization
        fields = ["name", "tier", "notes"]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        taken = Organization.objects.filter(name__iexact=name).exclude(pk=self.instance.pk)
        if taken.exists():
            raise forms.ValidationError(f"An organization named {name} exists already.")
        return name


@admin.register(Organization)
class OrganizationAdmin(ScopedAdminMixin, admin.ModelAdmin):
    form = OrganizationForm
    list_display = ["name", "tier", "domain_list", "customer_count", "created_at"]
    ordering = ["name"]
    list_filter = ["tier"]
    search_fields = ["name", "domains__domain"]
    fields = ["name", "tier", "notes", "created_at", "updated_at"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [OrganizationDomainInline]

    def visible(self, request: HttpRequest) -> QuerySet[Organization]:
        return (
            selectors.organization_list(user=request.user)
            .annotate(customer_count=Count("customers"))
            .prefetch_related("domains")
        )

    @admin.display(description="Domains")
    def domain_list(self, organization: Organization) -> str:
        return ", ".join(d.domain for d in organization.domains.all())

    @admin.display(description="Customers", ordering="customer_count")
    def customer_count(self, organization: Organization) -> int:
        return organization.customer_count

    def save_model(
        self, request: HttpRequest, obj: Organization, form: forms.ModelForm, change: bool
    ) -> None:
        if change:
            # There is no organization_update service: name, tier and notes are plain data.
            super().save_model(request, obj, form, change)
        # A new organization is created in save_related, together with its domains.

    def save_related(
        self, request: HttpRequest, form: forms.ModelForm, formsets: list, change: bool
    ) -> None:
        if change:
            super().save_related(request, form, formsets, change)
            return
        domains = [
            f.cleaned_data["domain"]
            for formset in formsets
            if formset.model is OrganizationDomain
            for f in formset.kept_forms()
        ]
        data = form.cleaned_data
        organization = services.organization_create(
            name=data["name"], domains=domains, tier=data["tier"], notes=data.get("notes", "")
        )
        adopt(form.instance, organization)
        for formset in formsets:
            formset.new_objects = list(organization.domains.all())
            formset.changed_objects, formset.deleted_objects = [], []
