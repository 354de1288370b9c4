"""Celery application: JSON only, late acks, one queue per provider group.

Tasks are routed by the app that defines them, so a slow provider group
(documents, ai) never starves another; workers choose queues with -Q.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("hub")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

QUEUE_BY_APP = {
    "payments": "payments",
    "messaging": "messaging",
    "ai": "ai",
    "documents": "documents",
    "scheduling": "scheduling",
    "travel": "travel",
}


def route_by_module(name, args, kwargs, options, task=None, **kw):
    """Route `payments.tasks.x` (or a task named `payments.x`) to the payments queue."""
    app_label = name.split(".", 1)[0]
    return {"queue": QUEUE_BY_APP.get(app_label, "default")}
