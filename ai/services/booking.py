"""A request's database work: the budget hold, the answer's booking, the request log (each one thread hop)."""

import functools
import time
from decimal import Decimal

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from integrations import gateway
from integrations.aio import db_hop, db_hop_or_undo, in_background
from integrations.auth.tokens import signed_out
from integrations.context import get_request_id
from integrations.errors import DomainError
from integrations.registry import get_provider

from ..messages import Completion
from ..models import AiRequest, AiSpend
from ..routing import chain_for
from ..usage import (
    ErasureStarted,
    budget_after,
    budget_extend,
    budget_reserve,
    budget_row,
    budget_settle,
    max_cost,
    priced_chain,
    settle_statement,
    settled,
    usage_record,
    usage_statement,
    user_limits,
)
from .cache import cache_get, cache_key, use_cache
from .chain import ChainExhausted, ChainRefused, answer_cost, tokens_first, wait_deadline, walk


def payload_for(result, *, cost, cached, fallbacks):
    return {
        "provider": result.provider,
        "model": result.model,
        "content": result.content,
        "tool_calls": result.tool_calls,
        "finish_reason": result.finish_reason,
        "usage": {
            "input_tokens": result.input_tokens,
            "output_tokens": result.output_tokens,
            "cached_tokens": result.cached_tokens,
            "cache_write_tokens": result.cache_write_tokens,
        },
        "cost_usd": str(Decimal(cost).quantize(Decimal("0.000001"))),
        "cached": cached,
        "fallbacks": fallbacks,
    }


def cut_short(provider, model, req, *, finish_reason, text="", counted=None):
    """An answer cut short, as booked: the input as the provider counted it when it said so before its answer
    ended (`counted`: the input fields of Anthropic's message_start, stream.input_so_far), else the hub's
    estimate; the answer estimated from the text it produced (none: 0). A provider bills the input of a call it
    was sent, whether or not anybody reads the answer."""
    return Completion(
        provider=provider,
        model=model,
        content=text,
        tool_calls=[],
        finish_reason=finish_reason,
        output_tokens=len(text) // 4,
        price_model=model,
        **(counted or {"input_tokens": req.estimated_input_tokens()}),
    )


def request_log(**fields):
    return AiRequest.objects.create(**_request_values(**fields))


@functools.cache
def _request_columns():
    return [field for field in AiRequest._meta.concrete_fields if not field.primary_key]


@functools.cache
def _pg_request_sql():
    qn = connection.ops.quote_name
    columns = _request_columns()
    return (
        f"INSERT INTO {qn(AiRequest._meta.db_table)} ({', '.join(qn(f.column) for f in columns)}) "
        f"VALUES ({', '.join(['%s'] * len(columns))})"
    )


def request_log_statement(**fields):
    """request_log's row as a PostgreSQL INSERT (sql, params), for the answer's one round trip."""
    values = {**_request_values(**fields), "created_at": timezone.now()}
    return _pg_request_sql(), [
        field.get_db_prep_save(values[field.attname], connection) for field in _request_columns()
    ]


def _request_values(
    *,
    user,
    owner_id=None,
    params,
    outcome,
    started,
    finished=None,
    result=None,
    cost=0,
    fallbacks=(),
    error_code="",
    stream=False,
    provider="",
    model="",
):
    # Another owner than the user: the pseudonym of the user's erasure (Booking.owned_now), which keeps no prompt.
    owner_id = user.pk if owner_id is None else owner_id
    log_prompts = settings.AI_LOG_PROMPTS and owner_id == user.pk
    counted = result is not None and outcome != AiRequest.Outcome.CACHED
    return dict(
        owner_id=owner_id,
        request_id=(get_request_id() or "")[:128],
        task=params.get("task") or "",
        requested_model=(params.get("model") or "")[:128],
        provider=result.provider if result else provider,
        model=(result.model if result else model)[:128],
        stream=stream,
        outcome=outcome,
        error_code=error_code[:64],
        finish_reason=(result.finish_reason if result else "")[:32],
        input_tokens=result.input_tokens if counted else 0,
        output_tokens=result.output_tokens if counted else 0,
        cached_tokens=result.cached_tokens if counted else 0,
        cache_write_tokens=result.cache_write_tokens if counted else 0,
        cost_usd=cost,
        latency_ms=round(((finished or time.monotonic()) - started) * 1000, 3),
        fallbacks=list(fallbacks),
        prompt=params["request"].canonical() if log_prompts else None,
        response_text=(result.content if result else "") if log_prompts else "",
    )


class BudgetSpent(Exception):
    """The walk stopped before a fallback: the budget has no room for the billed calls and another answer (or the
    user's erasure took it)."""

    def __init__(self, error):
        super().__init__(error.detail)
        self.error = error


class Booking:
    """What a request knows before its answer: who, what, when, and its hold on the budget."""

    def __init__(self, *, user, params, started, stream, on_done=None, on_fail=None, by_token=True):
        self.user = user
        self.by_token = by_token  # authenticated by an API token, not a browser's session (signed_out)
        # Whom the request's rows are written for: the user, or their erasure's pseudonym once it has started
        # (owned_now, in each booking's transaction).
        self.owner_id = user.pk
        self.params = params
        self.started = started
        self.stream = stream
        self.on_done = on_done  # called with the final payload, in the booking's thread hop
        self.on_fail = on_fail
        self.reservation = None
        # Calls the provider bills that gave no answer (a client gone mid-call, an Anthropic stream failed after
        # message_start counted its input): (result, cost, tried), booked with the request however it ends.
        self.unanswered = []
        self.covered = Decimal(0)  # how much of their cost the hold has been extended by (cover_billed)
        self.taken = None  # (provider, limiter.Taken): its first provider's tokens, taken beside the hold

    def reserve(self, chain):
        """Cap the answer's length, drop unpriced models, and hold the request's largest cost; meanwhile take
        the rate tokens of the first provider the walk will call (`token_for`).

        Returns the chain to walk and the entries left out of it."""
        limit, cap = user_limits(self.user.pk)
        req = self.params["request"]
        if req.max_tokens and req.max_tokens > cap:
            raise DomainError(
                400,
                "max_tokens_over_limit",
                f"max_tokens may be at most {cap} for your account; ask an administrator for more.",
                max_tokens_limit=cap,
            )
        # Every provider gets a cap, so the largest possible cost is known.
        req.max_tokens = req.max_tokens or min(settings.AI_DEFAULT_MAX_TOKENS, cap)
        chain, skipped = priced_chain(chain, named=bool(self.params.get("model")))
        amount = max_cost(
            chain, input_tokens=req.estimated_input_tokens(), output_tokens=req.max_tokens, cache_ttl=req.cache_ttl
        )
        # The tokens' round trip to Redis is sent before the hold's to PostgreSQL and read after it: the request
        # waits for the two at once, not one after the other as when its first attempt took them.
        first, sent = self._send_first_token(chain)
        try:
            self.reservation = budget_reserve(self.user.pk, amount, limit=limit)
        except ErasureStarted:
            raise signed_out(by_token=self.by_token) from None
        finally:
            taken = sent.answer() if sent is not None else None
            if taken is not None:
                self.taken = (first, taken)
                if self.reservation is None:
                    self.give_back_token()  # refused (402): no provider is called, so none of its rate is spent
        return chain, skipped

    def _send_first_token(self, chain):
        """(provider, gateway.send_token_ahead(...)) for the walk's first attempt, as it will ask (chain.walk:
        the first configured entry), or (None, None)."""
        first = next((p for p, _ in chain if not get_provider(p).missing()), None)
        if first is None:
            return None, None
        deadline = wait_deadline(self.started + settings.AI_DEADLINE_SECONDS)
        first_token = tokens_first(first, self.params["request"])
        return first, gateway.send_token_ahead(first, deadline=deadline, first_token=first_token)

    def token_for(self, provider):
        """The tokens taken beside the hold, for the attempt about to call `provider` if they are its (they
        are then that attempt's to use or give back: gateway.aattempt's `taken`), else None."""
        if self.taken is None or self.taken[0] != provider:
            return None
        taken, self.taken = self.taken[1], None
        return taken

    def give_back_token(self):
        """The tokens taken beside the hold and not used by an attempt, back to the provider's buckets."""
        if self.taken is not None:
            taken, self.taken = self.taken[1], None
            taken.give_back()

    def release(self):
        """Free the hold (nothing was answered), and the first provider's tokens if no attempt used them."""
        self.give_back_token()
        budget_settle(self.reservation, 0)

    def bill(self, call, result, tried):
        """A call sent that gave no answer (`result`: cut_short): priced on its attempt's row (the gateway's
        `call`, written as the attempt fails) and kept for the request's booking, whatever answers next."""
        cost = answer_cost(result)
        call.record(units=result.units(), cost_usd=cost)
        self.unanswered.append((result, cost, list(tried)))

    def unfinished(self):
        """The walk ended without an answer or an error to answer with (the client went away, a bug): book the
        calls the provider bills, the last one as the request's (client_closed when the client left it), or
        free the hold; then the Idempotency-Key, since the client got nothing to replay."""
        if not self.unanswered:
            self.release()
            return
        result, cost, tried = self.unanswered.pop()
        closed = result.finish_reason == "client_closed"
        try:
            self.answered(
                result,
                cost=cost,
                tried=tried,
                payload=None,
                outcome=AiRequest.Outcome.CLIENT_CLOSED if closed else AiRequest.Outcome.FAILED,
                error_code="" if closed else "server_error",
            )
        except BaseException:
            self.abandon()
            raise

    def uncovered(self):
        """What the calls billed without an answer cost beyond what the request's hold was extended by."""
        return sum((cost for _, cost, _ in self.unanswered), Decimal(0)) - self.covered

    def cover_billed(self, tried):
        """Before the next provider is asked: extend the hold by what the calls billed without an answer cost.

        The hold covers one answer at its largest; a provider that billed the prompt and then failed has spent
        part of it, so the next answer could take the month past the budget. Without room for both, the walk
        stops here with 402 `budget_exceeded` (BudgetSpent), the billed calls booked as the request's cost; if the
        user's erasure has taken the month's row meanwhile, with 401."""
        extra = self.uncovered()
        if budget_extend(self.reservation, extra):
            self.covered += extra
            return
        try:
            spent, reserved = budget_row(self.reservation.owner_id, self.reservation.month)
        except AiSpend.DoesNotExist:
            # The user's erasure handed their month, this hold with it, to the pseudonym while the request ran
            # (it was authenticated just before): no provider more. The billed calls are booked as the erasure
            # leaves them (owned_now), and the client is refused as signed out a moment later.
            refused = signed_out(by_token=self.by_token)
            self.failed(error_code=refused.code, tried=tried)
            raise BudgetSpent(refused) from None
        # Held for the user's other running requests (not this one's hold, nor what its lease has free for later).
        lease = self.reservation.lease
        others = max(Decimal(0), reserved - self.reservation.amount - (lease.available if lease is not None else 0))
        billed = extra + self.covered
        self.failed(error_code="budget_exceeded", tried=tried)
        limit = self.reservation.limit
        raise BudgetSpent(
            DomainError(
                402,
                "budget_exceeded",
                f"A provider failed after billing ${billed:.4f} for this request; with that, the next provider's "
                f"answer (up to ${self.reservation.amount:.4f}) could pass your AI budget of ${limit:.2f} for this "
                f"month (${spent:.4f} spent before this request, ${others:.4f} held for your other running "
                "requests). Retry with fewer max_tokens or a cheaper model, or ask an administrator to raise it.",
                limit_usd=str(limit),
                spent_usd=str(spent.quantize(Decimal("0.000001"))),
                reserved_usd=str(others.quantize(Decimal("0.000001"))),
                request_max_usd=str((self.reservation.amount + extra).quantize(Decimal("0.000001"))),
                tried=list(tried),
            )
        )

    def owned_now(self, owner_id=None):
        """In the booking's transaction, before it writes: the user's lock held shared and their erasure read
        (integrations.erasing). An answer that comes back once the user's erasure has started (a stream that
        outlived the grace period, an expedited erasure) is booked for the pseudonym, its prompt and answer not
        kept, and settled on the spend row that holds its hold: the user's until the erasure hands it on.

        `owner_id`: whom this transaction has already found the user's rows belong to, holding the lock (the
        provider call's row, written just before the booking): the lock and the read are not repeated."""
        from integrations.erasing import pseudonyms_now

        if owner_id is None:
            owner_id = pseudonyms_now([self.user.pk]).get(self.user.pk, self.user.pk)
        self.owner_id = owner_id
        held = self.reservation
        # The hold is on the user's row until the erasure hands it (with the user's AI rows) to the pseudonym.
        if (
            self.owner_id != self.user.pk
            and held is not None
            and held.owner_id == self.user.pk
            and not AiSpend.objects.filter(owner_id=self.user.pk, month=held.month).exists()
        ):
            held.owner_id = self.owner_id

    def _unanswered_booked(self):
        """The usage of the calls billed without an answer, added here; their total cost."""
        for result, cost, _ in self.unanswered:
            usage_record(**self._usage(result, cost))
        return sum((cost for _, cost, _ in self.unanswered), Decimal(0))

    def abandon(self):
        """An answer whose booking failed after it was sent: free the hold and the Idempotency-Key."""
        self.release()
        self._failed()

    @transaction.atomic(savepoint=False)  # inside the gateway's savepoint for it: one is enough
    def answered(self, result, *, cost, tried, payload, outcome=AiRequest.Outcome.OK, error_code="", call=None):
        """Book an answer the client was given as `payload` (or a stream it closed, or one the provider broke
        off: `error_code`): roll-up, budget, request log (one commit), and the payload handed to `on_done`
        (the Idempotency-Key's replay). `call`: the provider call whose row this transaction has written first
        (the gateway's `then`): its owner says whether the user's erasure has started, as its writer read it.

        If any of it fails, the caller's transaction undoes the settlement too: the hold is marked unsettled
        again, so `abandon()` frees it (it stayed reserved for the rest of the month)."""
        held = self.reservation is not None and not self.reservation.settled
        try:
            self.owned_now(call.row.owner_id if call is not None and call.row is not None else None)
            usage_record(**self._usage(result, cost))
            total = cost + self._unanswered_booked()
            self._spent(budget_settle(self.reservation, total), total)
            request_log(**self._log(result, total, tried, outcome), error_code=error_code)
            if outcome != AiRequest.Outcome.OK:
                self._failed()
            elif self.on_done:
                self.on_done(payload)
        except BaseException:
            if held:
                self.reservation.settled = False
            raise

    @property
    def hooks_free(self):
        """No Idempotency-Key hooks: its replay is stored with the booking in one transaction, step by step."""
        return self.on_done is None and self.on_fail is None

    def answered_at_once(self, result, *, cost, tried, outcome=AiRequest.Outcome.OK, finished=None):
        """`answered` of a request without hooks (hooks_free) as statements for the call row's one round
        trip (integrations.aio.at_once): ([(sql, params)], after(rows)), `after` run once they are committed.
        `finished`: when the answer was ready (time.monotonic()), the end of the request's logged latency
        however long its booking waits for a batch (gateway.bookings)."""
        total = cost + sum((extra for _, extra, _ in self.unanswered), Decimal(0))
        statements = [
            usage_statement(**self._usage(result, cost)),
            *(usage_statement(**self._usage(r, c)) for r, c, _ in self.unanswered),
            request_log_statement(**self._log(result, total, tried, outcome), finished=finished),
        ]
        held = self.reservation is not None and not self.reservation.settled
        if held:
            statements.append(settle_statement(self.reservation, total))

        def after(rows):
            if held:
                self._spent(settled(self.reservation, rows[-1], total), total)

        return statements, after

    def _usage(self, result, cost):
        return dict(
            owner_id=self.owner_id,
            provider=result.provider,
            model=result.model,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            cached_tokens=result.cached_tokens,
            cache_write_tokens=result.cache_write_tokens,
            cost_usd=cost,
        )

    def _log(self, result, cost, tried, outcome):
        return dict(
            user=self.user,
            owner_id=self.owner_id,
            params=self.params,
            outcome=outcome,
            started=self.started,
            result=result,
            cost=cost,
            fallbacks=tried,
            stream=self.stream,
        )

    def _spent(self, spent, cost):
        """The month's spend after this answer's settlement (None: nothing was spent): alert on a threshold."""
        if spent is not None:
            # What this request's own cost carried the spend from and to (concurrent ones book their own).
            budget_after(self.user.pk, limit=self.reservation.limit, before=spent - Decimal(cost), cost=cost)

    @transaction.atomic
    def cached(self, hit):
        result = Completion(
            provider=hit["provider"],
            model=hit["model"],
            content=hit["content"],
            tool_calls=hit["tool_calls"],
            finish_reason=hit["finish_reason"],
        )
        self.owned_now()
        usage_record(owner_id=self.owner_id, provider=result.provider, model=result.model, cached=True)
        request_log(
            user=self.user,
            owner_id=self.owner_id,
            params=self.params,
            outcome=AiRequest.Outcome.CACHED,
            started=self.started,
            result=result,
            stream=self.stream,
        )
        # Nothing was sent to a provider: no tokens, no cost.
        payload = payload_for(result, cost=0, cached=True, fallbacks=[])
        if self.on_done:
            self.on_done(payload)
        return payload

    @transaction.atomic
    def failed(self, *, error_code, tried, provider="", model="", streaming=False):
        self.owned_now()
        cost = self._unanswered_booked()  # what the provider bills for calls that failed after it counted them
        request_log(
            user=self.user,
            owner_id=self.owner_id,
            params=self.params,
            outcome=AiRequest.Outcome.FAILED,
            started=self.started,
            cost=cost,
            fallbacks=tried,
            error_code=error_code,
            stream=self.stream,
            provider=provider,
            model=model,
        )
        self._spent(budget_settle(self.reservation, cost), cost)
        if streaming:
            self._failed()  # before the stream, the caller sees the exception itself

    def _failed(self):
        if self.on_fail:
            self.on_fail()

    def chain_failed(self, exc):
        """The JSON error for a chain that did not answer (and its request log row)."""
        if isinstance(exc, ChainRefused):
            error = exc.error.as_api_error()
            error.extra["tried"] = exc.tried
            self.failed(error_code=exc.error.api_code, tried=exc.tried)
            return error
        waits = [t["retry_after"] for t in exc.tried if t.get("retry_after")]
        headers = {"Retry-After": str(int(min(waits) + 0.999))} if waits else {}
        if exc.tried:
            code = "ai_unavailable"
            detail = (
                "No AI provider could answer: "
                + "; ".join(f"{t['provider']} ({t['error']})" for t in exc.tried)
                + ". Try again later."
            )
        else:
            # Nothing could be asked: say what each entry lacks. A configured provider whose model has no
            # price (usage.priced_chain) needs a price, not the API key staff already set.
            code = "ai_not_configured"
            missing_keys = sorted({name for s in exc.skipped for name in s.get("missing", ())})
            unpriced = [f"{s['provider']}/{s['model']}" for s in exc.skipped if s["error"] == "model_not_priced"]
            needs = []
            if missing_keys:
                needs.append("set one of " + ", ".join(missing_keys))
            if unpriced:
                needs.append(
                    "give one of " + ", ".join(unpriced) + " a price (AI_MODEL_PRICES_JSON) or mark it free in admin"
                )
            detail = "No AI provider on this route can be called; " + ", or ".join(needs or ["configure one"]) + "."
        self.failed(error_code=code, tried=exc.tried)
        return DomainError(503, code, detail, headers=headers, tried=exc.tried, skipped=exc.skipped)


class Begun:
    """A request's booking before its provider call: the chain, its answer-cache key, and its hold if taken."""

    def __init__(self, booking, chain, key, held):
        self.booking = booking
        self.chain = chain
        self.key = key
        self.held = held  # (chain, skipped) once the budget hold is taken


def begin(user, params, *, stream, on_done=None, on_fail=None, by_token=True):
    """Synchronous, in the caller's thread hop (the view's checks): the booking, and the budget hold
    of a request the answer cache cannot serve, so its provider call needs no hop of its own first.
    `by_token`: the request was authenticated by an API token (False: a browser's session)."""
    started = time.monotonic()
    chain = chain_for(task=params.get("task"), model=params.get("model"), provider=params.get("provider"))
    booking = Booking(
        user=user, params=params, started=started, stream=stream, on_done=on_done, on_fail=on_fail, by_token=by_token
    )
    key = cache_key(owner_id=user.pk, params=params) if use_cache(params) else None
    # A cacheable request looks in the cache first (a hit holds nothing): its hold waits for start().
    return Begun(booking, chain, key, None if key else booking.reserve(chain))


async def start(begun):
    """(booking, (chain, skipped), cache key, cached payload or None) for a begun request."""
    booking, key = begun.booking, begun.key
    hit = await cache_get(key) if key else None
    if hit is not None:
        return booking, None, key, await db_hop(booking.cached, hit)
    # From here the request holds part of the budget: every way out settles it.
    return booking, begun.held or await db_hop_or_undo(booking.release, booking.reserve, begun.chain), key, None


async def walk_booked(booking, chain_and_skipped, attempt_fn):
    chain, skipped = chain_and_skipped
    deadline = booking.started + settings.AI_DEADLINE_SECONDS

    async def attempt(provider, model, deadline, tried):
        if booking.uncovered() > 0:
            await db_hop(booking.cover_billed, tried)
        return await attempt_fn(provider, model, deadline, tried)

    try:
        return await walk(chain, attempt, deadline=deadline, skipped=skipped)
    except BudgetSpent as exc:
        raise exc.error from None  # booked as it stopped (cover_billed)
    except (ChainExhausted, ChainRefused) as exc:
        raise await db_hop(booking.chain_failed, exc) from None
    except BaseException:
        # Handed to the background writer, as a closed stream's booking is: a request cancelled once (its client
        # went away) may be cancelled again (the server shutting down), and the booking must still be written.
        await in_background(booking.unfinished)
        raise
    finally:
        if booking.taken is not None:
            # The walk never asked the provider they were taken for (the deadline passed first, say).
            await in_background(booking.give_back_token)
