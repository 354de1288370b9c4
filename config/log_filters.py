"""Logging filters for the console handler (config.settings.base.LOGGING)."""

import logging


class RoutineTasksAtDebug(logging.Filter):
    """Celery's lines about routine beat tasks become DEBUG lines.

    Beat sends the worker heartbeat every HEARTBEAT_INTERVAL_SECONDS and the
    webhook sweeper every minute; each one makes three INFO lines (beat sent,
    worker received, worker succeeded) that drown everything else in a
    terminal. They still show at LOG_LEVEL=DEBUG (or `--loglevel DEBUG`), and
    a failure of such a task stays an ERROR: only INFO lines are demoted.
    """

    def __init__(self, tasks=()):
        super().__init__()
        self.tasks = tuple(tasks)

    def filter(self, record):
        if record.levelno != logging.INFO or not record.name.startswith("celery"):
            return True
        message = record.getMessage()
        if not any(task in message for task in self.tasks):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger(record.name).isEnabledFor(logging.DEBUG)
