"""Outgoing email through Django's backend, as a provider: every send is a gateway attempt (a ProviderCall).

Registered as provider "email" (configured whenever EMAIL_BACKEND is set). SMTP's
own answers are translated once: a 4xx reply is temporary (retried by the task),
a 5xx reply is a refusal (not retried); connection trouble is classified by the
gateway as retryable.
"""

import contextlib
import smtplib
from dataclasses import dataclass

from django.conf import settings
from django.core.mail import get_connection, send_mail

from .errors import PermanentError, ProviderUnavailable
from .providers import ProviderAdapter

PROVIDER = "email"


class EmailAdapter(ProviderAdapter):
    provider = PROVIDER
    sdk_errors = (smtplib.SMTPException,)

    def translate(self, exc):
        code = getattr(exc, "smtp_code", None)
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            codes = [c for c, _ in exc.recipients.values()]
            code = min(codes) if codes else None
        message = str(exc)[:300]
        if isinstance(exc, smtplib.SMTPServerDisconnected) or (code is not None and 400 <= code < 500):
            return ProviderUnavailable(PROVIDER, message, code=str(code or ""))
        return PermanentError(PROVIDER, message, code=str(code or "") or None)


EMAIL = EmailAdapter()


@dataclass(frozen=True)
class MailResult:
    sent: int


def mail_connection():
    """A backend connection for several mail_send calls (a batch of notices): one SMTP session, not one each.

    Not opened here: the first mail_send that uses it opens it inside its own attempt, so a server that cannot be
    reached is that message's failure, classified like any other. Close it when the batch ends.
    """
    return get_connection()


def mail_send(*, subject, message, to, owner=None, related=None, connection=None):
    """Send one message to `to` (a list of addresses) as one gateway attempt.

    `connection` (mail_connection): kept open for the messages after this one; a failed send closes it, so the
    next message opens a fresh session instead of writing to a broken one."""
    with EMAIL.attempt("mail.send", owner=owner, related=related) as call:
        try:
            if connection is not None:
                connection.open()
            sent = send_mail(
                subject=subject,
                message=message,
                from_email=settings.DEFAULT_FROM_EMAIL,
                recipient_list=to,
                connection=connection,
            )
        except Exception:
            if connection is not None:
                with contextlib.suppress(Exception):  # the send's own error is the one that matters
                    connection.close()
            raise
        call.record(units={"messages": sent})
    return MailResult(sent=sent)
