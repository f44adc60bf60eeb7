"""API routes of the cases app, mounted under /api/v1/ by crm/urls.py."""

from django.urls import path
from rest_framework.routers import SimpleRouter

from cases.api.analytics import DashboardView, PerformanceView, ReportView, TrendsView
from cases.api.cases import CaseViewSet
from cases.api.customers import CustomerViewSet, OrganizationViewSet
from cases.api.macros import MacroApplyView, MacroListView, MacroRenderView
from cases.api.sla_reports import SlaReportView
from cases.api.tasks import TaskViewSet
from cases.api.workflows import WorkflowDryRunView

router = SimpleRouter(trailing_slash=False)
router.register("cases", CaseViewSet, basename="case")
router.register("tasks", TaskViewSet, basename="task")
router.register("customers", CustomerViewSet, basename="customer")
router.register("organizations", OrganizationViewSet, basename="organization")

urlpatterns = router.urls
urlpatterns += [
    path("analytics/dashboard", DashboardView.as_view(), name="analytics-dashboard"),
    path("analytics/trends", TrendsView.as_view(), name="analytics-trends"),
    path("analytics/performance", PerformanceView.as_view(), name="analytics-performance"),
    path("analytics/reports", ReportView.as_view(), name="analytics-reports"),
    path("analytics/sla", SlaReportView.as_view(), name="analytics-sla"),
    path("macros", MacroListView.as_view(), name="macro-list"),
    path("workflows/dry-run", WorkflowDryRunView.as_view(), name="workflow-dry-run"),
    path(
        "cases/<int:case_id>/macros/<int:macro_id>/render",
        MacroRenderView.as_view(),
        name="case-macro-render",
    ),
    path(
        "cases/<int:case_id>/macros/<int:macro_id>/apply",
        MacroApplyView.as_view(),
        name="case-macro-apply",
    ),
]
