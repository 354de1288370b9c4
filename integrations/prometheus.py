"""/metrics: Prometheus text for every process of this host, for allowed callers only.

Multiprocess mode (PROMETHEUS_MULTIPROC_DIR, set in config.settings.ops):
each process writes its samples to its own files there and this view adds
them up, so N requests over 3 gunicorn workers read N. The web server runs
the hooks in `integrations.gunicorn_hooks`: the directory is emptied when the
server starts and a dead worker's live gauges are dropped.
"""

import hmac
import ipaddress
import os

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

from integrations.auth.throttle import client_ip


def _allowed(request):
    token = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and hmac.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    if settings.METRICS_ALLOWED_NETWORKS:
        try:
            address = ipaddress.ip_address(client_ip(request))
        except ValueError:
            return False
        return any(address in ipaddress.ip_network(net, strict=False) for net in settings.METRICS_ALLOWED_NETWORKS)
    return False


@never_cache
@require_GET
def metrics_view(request):
    if not _allowed(request):
        response = JsonResponse(
            {
                "error": "not_authenticated",
                "detail": "Metrics need `Authorization: Bearer <METRICS_TOKEN>` or an address in METRICS_ALLOWED_NETWORKS.",
            },
            status=401,
        )
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
