"""The registry of providers: one entry per provider of DESIGN.md's twelve services.

Each entry names the settings it needs. A provider is configured when all of
them are set; `missing` lists the names (never the values) of those that are
not. The gateway refuses a call to a provider that is not configured.
"""

from dataclasses import dataclass

from django.conf import settings


class UnknownProvider(LookupError):
    pass


@dataclass(frozen=True)
class Provider:
    name: str
    service: str
    label: str
    # Each item is a setting name, or a tuple of names of which one suffices.
    requires: tuple = ()
    group: str = "default"

    def missing(self):
        missing = []
        for item in self.requires:
            names = item if isinstance(item, tuple) else (item,)
            if not any(getattr(settings, n, "") for n in names):
                missing.append(" or ".join(names))
        return missing

    @property
    def configured(self):
        return not self.missing()


_GOOGLE = ("GOOGLE_CLIENT_ID", "GOOGLE_CLIENT_SECRET")
_MICROSOFT = ("MICROSOFT_CLIENT_ID", "MICROSOFT_CLIENT_SECRET")

PROVIDERS = {
    p.name: p
    for p in [
        Provider("stripe", "Stripe", "Stripe", ("STRIPE_SECRET_KEY",), "payments"),
        Provider("s3", "AWS S3", "Amazon S3", ("S3_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"), "documents"),
        Provider("gmail", "Gmail", "Gmail", _GOOGLE, "messaging"),
        Provider("outlook", "Outlook mail", "Outlook mail (Microsoft Graph)", _MICROSOFT, "messaging"),
        Provider(
            "twilio",
            "Twilio",
            "Twilio",
            ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN", ("TWILIO_PHONE_NUMBER", "TWILIO_MESSAGING_SERVICE_SID")),
            "messaging",
        ),
        Provider("openai", "OpenAI", "OpenAI", ("OPENAI_API_KEY",), "ai"),
        Provider("anthropic", "Anthropic", "Anthropic", ("ANTHROPIC_API_KEY",), "ai"),
        Provider("openrouter", "OpenRouter", "OpenRouter", ("OPENROUTER_API_KEY",), "ai"),
        Provider("xai", "xAI Grok", "xAI Grok", ("XAI_API_KEY",), "ai"),
        Provider("gemini", "Google Gemini", "Google Gemini", ("GEMINI_API_KEY",), "ai"),
        Provider("github_models", "GitHub Models", "GitHub Models (Copilot)", ("GITHUB_MODELS_TOKEN",), "ai"),
        Provider("duffel", "Flights", "Duffel flights", ("DUFFEL_ACCESS_TOKEN",), "travel"),
        Provider("google_oauth", "OAuth2", "Google OAuth", _GOOGLE, "oauth"),
        Provider("microsoft_oauth", "OAuth2", "Microsoft OAuth", _MICROSOFT, "oauth"),
        Provider("google_calendar", "Calendar", "Google Calendar", _GOOGLE, "scheduling"),
        Provider("microsoft_calendar", "Calendar", "Microsoft Calendar", _MICROSOFT, "scheduling"),
        Provider("zoom", "Video", "Zoom", ("ZOOM_ACCOUNT_ID", "ZOOM_CLIENT_ID", "ZOOM_CLIENT_SECRET"), "scheduling"),
        Provider("google_meet", "Video", "Google Meet", _GOOGLE, "scheduling"),
        Provider("teams", "Video", "Microsoft Teams", _MICROSOFT, "scheduling"),
        Provider("webex", "Video", "Webex", ("WEBEX_CLIENT_ID", "WEBEX_CLIENT_SECRET"), "scheduling"),
        # Not vendors of their own, but outbound calls all the same: each send or scan is a ProviderCall.
        Provider("email", "Email", "Outgoing email (Django's email backend)", ("EMAIL_BACKEND",), "messaging"),
        Provider("clamav", "Malware scanning", "ClamAV (clamd)", ("CLAMD_URL",), "documents"),
        # Operations (issue 14): alert notices to Slack / signed webhooks (their URLs are per channel),
        # and the audit trail's daily archive in its own bucket.
        Provider("alert_webhook", "Alerts", "Alert channels (Slack, signed webhooks)", (), "operations"),
        Provider(
            "audit_archive",
            "Audit archive",
            "Audit archive (S3)",
            ("AUDIT_ARCHIVE_BUCKET", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"),
            "operations",
        ),
    ]
}


def get_provider(name):
    try:
        return PROVIDERS[name]
    except KeyError:
        raise UnknownProvider(name) from None


def all_providers():
    return list(PROVIDERS.values())


def require(name):
    """The provider's entry, or ProviderNotConfigured naming the missing settings: the one "is it configured?" check."""
    from .errors import ProviderNotConfigured

    spec = get_provider(name)
    missing = spec.missing()
    if missing:
        raise ProviderNotConfigured(name, missing)
    return spec
