from django.urls import path

from activesync import views

urlpatterns = [
    path("Microsoft-Server-ActiveSync", views.endpoint, name="activesync"),
]
