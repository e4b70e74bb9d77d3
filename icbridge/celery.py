"""The Celery application; tasks live next to their services in each app."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "icbridge.settings")

app = Celery("icbridge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
