from django.urls import path

from monitoring import views

urlpatterns = [
    path("health", views.health, name="health"),
    path("health/live", views.health_live, name="health-live"),
    path("health/ready", views.health_ready, name="health-ready"),
    path("metrics", views.metrics, name="metrics"),
    path("dashboard", views.dashboard, name="monitoring-dashboard"),
]
