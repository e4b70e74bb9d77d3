"""The Celery application; tasks live next to their services in each app."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "icbridge.settings")

app = Celery("icbridge")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _recycle_database_connections(**kwargs: object) -> None:
    """Drop a connection that is broken or past CONN_MAX_AGE, keep a healthy one (see settings)."""
    from django.db import close_old_connections

    close_old_connections()
