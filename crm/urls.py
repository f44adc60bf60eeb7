from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView
from rest_framework.routers import SimpleRouter

from crm import health, metrics, views, web_notifications, webhooks
from crm.api.notifications import NotificationViewSet
from crm.api.views import AgentViewSet, TeamViewSet

admin.site.site_header = "Support CRM administration"
admin.site.site_title = "Support CRM admin"
admin.site.index_title = "Configuration"

router = SimpleRouter(trailing_slash=False)
router.register("teams", TeamViewSet, basename="team")
router.register("agents", AgentViewSet, basename="agent")
router.register("notifications", NotificationViewSet, basename="notification")

urlpatterns = [
    path("", views.home, name="home"),
    *web_notifications.urlpatterns,
    path("", include("cases.web.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/webhooks/microsoft", webhooks.notifications, name="webhook-microsoft"),
    path(
        "api/v1/webhooks/microsoft/lifecycle",
        webhooks.lifecycle,
        name="webhook-microsoft-lifecycle",
    ),
    path("api/v1/", include(router.urls)),
    path("api/v1/", include("cases.urls")),
    path("api/v1/", include("mailsync.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
    path("", include("activesync.urls")),
]
