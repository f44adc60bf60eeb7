"""WebSocket routes of every app, collected here because ASGI routing is project wiring."""

from django.urls import path

from crm.consumers import HealthConsumer

websocket_urlpatterns = [
    path("ws/health", HealthConsumer.as_asgi()),
]
