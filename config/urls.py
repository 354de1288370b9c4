from csp.constants import SELF, UNSAFE_INLINE
from csp.decorators import csp_replace
from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config.views import landing
from integrations import prometheus
from integrations.api import errors
from integrations.views import health
from messaging.mail import webhooks as mail_webhooks
from scheduling import webhooks as scheduling_webhooks

admin.site.site_header = "Integration Hub admin"
admin.site.site_title = "Integration Hub"
admin.site.index_title = "Providers, calls, webhooks and domain records"

api_v1 = [
    path("auth/", include("integrations.auth.urls")),
    path("integrations/", include("integrations.urls")),
    path("connections/", include("integrations.oauth.urls")),
    path("mail/", include("messaging.mail.urls")),
    path("documents/", include("documents.urls")),
    path("payments/", include("payments.urls")),
    path("messaging/", include("messaging.urls")),
    path("ai/", include("ai.urls")),
    path("travel/", include("travel.urls")),
    path("scheduling/", include("scheduling.urls")),
    path("calendars/", include("scheduling.calendars.urls")),
    path("privacy/", include("privacy.urls")),
]

urlpatterns = [
    # A person opening the hub's address (or admin's "View site") lands on links, not a 404.
    path("", landing, name="landing"),
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    # ReDoc's bundle injects its CSS as <style> elements (styled-components) that cannot carry
    # the nonce, and runs its search in a worker built from a blob: URL. This page alone allows
    # inline styles and blob: workers; scripts stay nonce-only.
    path(
        "api/redoc/",
        csp_replace({"style-src": [SELF, UNSAFE_INLINE], "worker-src": [SELF, "blob:"]})(
            SpectacularRedocView.as_view(url_name="schema")
        ),
        name="redoc",
    ),
    # Stripe Checkout sends customers back here (STRIPE_CHECKOUT_SUCCESS_URL / _CANCEL_URL default to these).
    path("payments/", include("payments.page_urls")),
    path("webhooks/twilio/", include("messaging.webhook_urls")),
    # Graph's validation handshake answers text/plain, so Outlook has its own view in front of the inbox.
    path("webhooks/outlook/", mail_webhooks.outlook_webhook, name="mail-outlook-webhook"),
    path("webhooks/zoom/", scheduling_webhooks.zoom_webhook, name="zoom-webhook"),
    # Calendar push: Google channels (headers only) and Graph subscriptions (validation handshake first).
    path("webhooks/google-calendar/", scheduling_webhooks.google_calendar_webhook, name="google-calendar-webhook"),
    path("webhooks/outlook-calendar/", scheduling_webhooks.outlook_calendar_webhook, name="outlook-calendar-webhook"),
    # Teams meeting recordings/transcripts (Graph subscriptions per meeting; validation handshake first).
    path("webhooks/teams/", scheduling_webhooks.teams_webhook, name="teams-webhook"),
    # Google Meet lifecycle events: Workspace Events through a Pub/Sub push (OIDC-signed).
    path("webhooks/google-meet/", scheduling_webhooks.google_meet_webhook, name="google-meet-webhook"),
    # The webhook inbox: POST /webhooks/<provider>/ for each registered verifier.
    path("webhooks/", include("integrations.webhooks.urls")),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", prometheus.metrics_view, name="prometheus-django-metrics"),
    # Anything else under /api/ is a JSON 404, also with DEBUG on; so is any other /webhooks/.../ path. A
    # /webhooks URL without its final slash redirects a GET to the slashed one, as CommonMiddleware would,
    # but a POST gets a JSON 404 naming it: a redirected POST loses its body (providers do not follow
    # redirects), and with DEBUG on CommonMiddleware raised RuntimeError for it, an HTML 500.
    re_path(r"^api(?:/|$)", errors.api_not_found),
    re_path(r"^webhooks/(?:.+/)?$", errors.api_not_found),
    re_path(r"^webhooks(?:/.*[^/])?$", errors.slash_missing),
]

handler400 = "integrations.api.errors.handler400"
handler403 = "integrations.api.errors.handler403"
handler404 = "integrations.api.errors.handler404"
handler500 = "integrations.api.errors.handler500"
