"""Opt-outs: a number that texted STOP is never messaged again until it texts START."""

from django.utils import timezone

from integrations.errors import DomainError

from ..models import OptOut

# Twilio's default opt-out keywords (Advanced Opt-Out sends OptOutType too).
STOP_WORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT"})
START_WORDS = frozenset({"START", "YES", "UNSTOP"})
HELP_WORDS = frozenset({"HELP", "INFO"})


def opted_out(number):
    return OptOut.objects.filter(phone_number=number, active=True).exists()


def optout_apply(*, number, keyword, opt_out):
    now = timezone.now()
    fields = {"active": opt_out, "keyword": keyword}
    fields["opted_out_at" if opt_out else "opted_in_at"] = now
    OptOut.objects.update_or_create(phone_number=number, defaults=fields)


def optout_keyword_apply(*, number, text):
    """An inbound message's keyword (STOP, START; HELP is Twilio's to answer) applied to its sender."""
    keyword = text.strip().upper()
    if keyword in STOP_WORDS:
        optout_apply(number=number, keyword=keyword, opt_out=True)
    elif keyword in START_WORDS:
        optout_apply(number=number, keyword=keyword, opt_out=False)


def refuse_opted_out(number):
    if opted_out(number):
        raise DomainError(
            409,
            "recipient_opted_out",
            f"{number} replied STOP and cannot be messaged until it texts START.",
            to=number,
        )
