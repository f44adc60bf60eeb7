"""API routes of the cases app, mounted under /api/v1/ by crm/urls.py."""

from rest_framework.routers import SimpleRouter

from cases.api.cases import CaseViewSet
from cases.api.customers import CustomerViewSet, OrganizationViewSet
from cases.api.tasks import TaskViewSet

router = SimpleRouter(trailing_slash=False)
router.register("cases", CaseViewSet, basename="case")
router.register("tasks", TaskViewSet, basename="task")
router.register("customers", CustomerViewSet, basename="customer")
router.register("organizations", OrganizationViewSet, basename="organization")

urlpatterns = router.urls
