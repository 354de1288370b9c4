"""An outbound job for the scale-out benchmark: one provider call through the gateway, as every real task makes.

The provider is "stripe" (configured by bench.settings with a bucket the bench never empties) and the call
itself an in-process fake that answers at once, so jobs/s measures the hub's per-job work (the Celery task,
the limiter and breaker in Redis, the ProviderCall row and usage roll-up in PostgreSQL), not a network.
"""

import time

from celery import shared_task

from integrations.gateway import call
from integrations.redis import get_client
from integrations.task_base import ProviderTask

DONE_KEY = "bench:outbound-done"  # a Redis hash: job id -> runs


def _instant_provider():
    return {"id": "ch_bench", "object": "charge", "amount": 1000}


def _meter(result):
    return {"http_status": 200, "request_id": "req_bench"}


@shared_task(bind=True, base=ProviderTask, provider="stripe", name="bench.outbound_job", ignore_result=True)
def outbound_job(self, job_id):
    call("stripe", "charge", _instant_provider, meter=_meter, owner=None)
    get_client().hincrby(DONE_KEY, str(job_id), 1)


@shared_task(bind=True, base=ProviderTask, provider="stripe", name="bench.control_job", ignore_result=True)
def control_job(self, job_id, cpu_ms):
    """The scale-out bench's control: the same task class, message and count as outbound_job, but in place of the
    gateway call `cpu_ms` of pure CPU work (this thread's CPU clock), touching nothing shared. What Celery and the
    broker give a job of that size on these cores, against which the hub's own job is measured."""
    end, total, seen = time.thread_time() + cpu_ms / 1000, 0, {}
    while time.thread_time() < end:
        for i in range(500):  # bench/run.py's reference loop, a few tens of microseconds between clock reads
            total += i
            seen[i & 1023] = total
    get_client().hincrby(DONE_KEY, str(job_id), 1)
