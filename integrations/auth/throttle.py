"""Login throttling on django-axes: the lockout answer and the staff alert.

django-axes (not django-ratelimit) because a lockout must count *failed*
logins, not requests: axes sits in `authenticate()` itself (a backend plus
the `user_login_failed` signal), so the admin login, the token endpoint and
any later login path are covered by one mechanism; it locks per IP and,
separately, per username (AXES_LOCKOUT_PARAMETERS), resets on success, and
keeps every attempt in the database where staff can see and clear it in
admin (`axes_reset`). django-ratelimit stays for per-endpoint request rates.
"""

import logging

from axes.helpers import get_cool_off
from axes.signals import user_locked_out
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_login_failed
from django.dispatch import receiver
from django.http import HttpResponse, JsonResponse

from integrations.alerts import alert_raise
from integrations.errors import DomainError
from integrations.models import Alert

logger = logging.getLogger(__name__)


def retry_after_seconds(request=None):
    cool_off = get_cool_off(request)
    return max(1, int(cool_off.total_seconds())) if cool_off else 3600


def lockout_response(request, original_response=None, credentials=None):
    """429 with Retry-After: JSON under /api/, a plain page on the admin login."""
    seconds = retry_after_seconds(request)
    detail = f"Too many failed logins from this address or for this user; retry in {seconds} seconds."
    if request.path.startswith(("/api/", "/webhooks/")):
        response = JsonResponse({"error": "login_locked", "detail": detail, "retry_after": seconds}, status=429)
    else:
        response = HttpResponse(detail, status=429, content_type="text/plain; charset=utf-8")
    response["Retry-After"] = str(seconds)
    return response


def client_ip(request):
    """The caller's address: REMOTE_ADDR, or the address our own proxies saw (TRUSTED_PROXY_COUNT).

    Only the last TRUSTED_PROXY_COUNT entries of X-Forwarded-For were written by
    proxies we run; anything left of them is what the client claimed, so a
    spoofed header cannot move an attacker to a fresh address.
    """
    count = settings.TRUSTED_PROXY_COUNT
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
    if count and forwarded:
        hops = [h.strip() for h in forwarded.split(",") if h.strip()]
        if len(hops) >= count:
            return hops[-count]
    return request.META.get("REMOTE_ADDR", "")


def password_check(request, *, username, password):
    """The account whose password this is, or None, counted by django-axes exactly like a login.

    For the one place a password is checked outside `authenticate()`: an account deactivated by a pending
    erasure confirming that it wants to stay (Django's backends refuse inactive accounts, and a correct
    password there would count as a failed login). A locked-out address or username is refused first (429),
    and a wrong password or unknown username is a failure django-axes counts towards the same lockout.
    """
    from axes.handlers.proxy import AxesProxyHandler

    credentials = {"username": username}
    if not AxesProxyHandler.is_allowed(request, credentials):
        seconds = retry_after_seconds(request)
        raise DomainError(
            429,
            "login_locked",
            f"Too many failed logins from this address or for this user; retry in {seconds} seconds.",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )
    User = get_user_model()  # noqa: N806
    user = User.objects.filter(**{User.USERNAME_FIELD: username}).first()
    if user is None:
        User().set_password(password)  # as slow as a real check, so timing does not tell which names exist
    elif user.check_password(password):
        return user
    user_login_failed.send(sender=__name__, credentials=credentials, request=request)
    return None


LOCKOUT_ALERT_KEY = "security:login_lockout"


def lockout_who(username):
    """How the lockout alert names the account (integrations.privacy finds it by this to redact it)."""
    return f"user {username!r:.80}"


@receiver(user_locked_out)
def alert_staff_on_lockout(sender, request=None, username=None, ip_address=None, **kwargs):
    # One open alert for all lockouts: a spike (credential stuffing) counts up
    # its occurrences instead of flooding staff with rows.
    logger.warning("login locked out", extra={"ip_address": ip_address, "login_username": (username or "")[:150]})
    alert_raise(
        kind=Alert.Kind.SECURITY,
        severity=Alert.Severity.CRITICAL,
        message=f"Login lockout: too many failed logins (last: {lockout_who(username)} from {ip_address}).",
        dedupe_key=LOCKOUT_ALERT_KEY,
    )
