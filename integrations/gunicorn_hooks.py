"""Gunicorn server hooks the hub needs; the gunicorn config imports them:

    def on_starting(server): ...  (see config/gunicorn.conf.py, which calls the two below)

Prometheus multiprocess mode: the samples directory is emptied once, in the
master, before any worker starts (files of a previous run would be added in),
and a dead worker's live gauges are dropped. Nothing here imports
prometheus_client before the settings have put PROMETHEUS_MULTIPROC_DIR in the
environment: a module imported in the master without it would make every
forked worker count for itself again.
"""

import os
import shutil


def on_starting(server):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    from django.conf import settings

    path = settings.PROMETHEUS_MULTIPROC_DIR  # loading the settings also exports it
    if path:
        shutil.rmtree(path, ignore_errors=True)
        os.makedirs(path, exist_ok=True)


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
