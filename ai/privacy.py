"""What the AI gateway holds about a user (privacy registry): requests (prompts and answers when logged), usage."""

from django.db import transaction

from integrations.erasing import owner_lock, owner_rows_handed_to
from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import AiBudget, AiRequest, AiSpend, AiUsageMonthly
from .services.cache import cache_clear_owner
from .usage import USAGE_SUMS

ACCOUNTING = "accounting: tokens and cost per month, owner replaced by a pseudonym"


def export_ai(user, out):
    out.json(
        "ai",
        {
            "requests": rows(AiRequest.objects.filter(owner=user), exclude=("owner",)),
            "usage_monthly": rows(AiUsageMonthly.objects.filter(owner=user), exclude=("owner",)),
            "spend_monthly": rows(AiSpend.objects.filter(owner=user), exclude=("owner",)),
            "budget": rows(AiBudget.objects.filter(owner=user), exclude=("owner",)),
        },
        description="Your AI requests (model, tokens, cost, and the prompt and answer when they were logged), usage.",
    )


def erase_ai(user, report):
    pseudonym = report.pseudonym_user
    with transaction.atomic():
        # An answer's booking writes the user's rows holding the user's lock, shared, and reads whether they are
        # being erased once it holds it (integrations.erasing). Taken exclusively here, after this erasure started:
        # a booking that read "no" is committed by then and re-pointed below; a later one is booked for the
        # pseudonym (Booking.owned_now, or the guard of the answer's one round trip).
        owner_lock(user.pk, exclusive=True)
        report.count(
            "ai.AiRequest.prompts_deleted",
            AiRequest.objects.filter(owner=user).update(prompt=None, response_text="", owner=pseudonym),
        )
        report.count(
            "ai.AiUsageMonthly.pseudonymised",
            owner_rows_handed_to(AiUsageMonthly, ("month", "provider", "model"), USAGE_SUMS, user, pseudonym),
        )
        report.count(
            "ai.AiSpend.pseudonymised",
            owner_rows_handed_to(AiSpend, ("month",), ("spent_usd", "reserved_usd"), user, pseudonym),
        )
    report.count("ai.AiBudget", AiBudget.objects.filter(owner=user).delete()[0])
    # Cached answers expire within AI_CACHE_TTL_SECONDS, long before a grace period ends; an expedited
    # erasure runs well within it. In Redis, or without it (make run) in a table every process sees: the
    # erasure runs in the worker, the answers were cached by the web process.
    report.count("ai.cached_answers", cache_clear_owner(owner_id=user.pk))


register(
    PrivacyHolder(
        app="ai",
        models=("ai.AiRequest", "ai.AiUsageMonthly", "ai.AiBudget", "ai.AiSpend", "ai.CachedAnswer"),
        export=export_ai,
        erase=erase_ai,
        keep={
            "ai.AiRequest": "accounting: model, tokens and cost; the prompt and answer are deleted",
            "ai.AiUsageMonthly": ACCOUNTING,
            "ai.AiSpend": ACCOUNTING,
        },
        description=(
            "AI requests (prompts and answers only when prompt logging is on), monthly usage, your budget. "
            "Answers to a repeated deterministic request are cached for up to an hour (AI_CACHE_TTL_SECONDS) under "
            "a digest of the request, without the prompt: a copy of an answer you already received, not in this "
            "export, deleted at erasure."
        ),
        retention="prompts per the retention policy; usage for accounting (pseudonymised at erasure).",
    )
)
