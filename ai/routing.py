"""Which (provider, model) pairs to try, in order, for a request."""

from django.conf import settings

from integrations.errors import DomainError

from .providers import PROVIDERS
from .usage import price_entry


def chain_for(*, task=None, model=None, provider=None):
    """The ordered chain for a request: a task's route, or the entries serving a named model."""
    if task and task not in settings.AI_ROUTES:
        raise DomainError(
            400, "unknown_task", f"Unknown task {task!r}; use one of {', '.join(sorted(settings.AI_ROUTES))}."
        )
    if provider and provider not in PROVIDERS:
        raise DomainError(400, "unknown_provider", f"Unknown provider {provider!r}; use one of {', '.join(PROVIDERS)}.")
    route = [tuple(e) for e in settings.AI_ROUTES[task or settings.AI_DEFAULT_TASK]]
    if model and provider:
        # Only what staff put on a route or priced: anything else could be a
        # model the hub cannot account for (or one nobody meant to offer).
        on_route = any(tuple(e) == (provider, model) for chain in settings.AI_ROUTES.values() for e in chain)
        if not on_route and price_entry(provider, model) is None:
            raise DomainError(
                400,
                "unknown_model",
                f"{provider}/{model} is on no route and not in the price table; use a task "
                f"({', '.join(sorted(settings.AI_ROUTES))}) or a model from GET /api/docs/.",
                provider=provider,
                model=model,
            )
        return [(provider, model)]
    if model:
        # Every route entry serving this model, the requested task's first.
        ordered = route + [tuple(e) for chain in settings.AI_ROUTES.values() for e in chain]
        chain = list(dict.fromkeys(e for e in ordered if e[1] == model))
        if not chain:
            chain = [(p, model) for p, table in settings.AI_MODEL_PRICES.items() if model in table]
        if not chain:
            raise DomainError(
                400,
                "unknown_model",
                f"No route serves model {model!r}; name its provider too, or use a task ({', '.join(sorted(settings.AI_ROUTES))}).",
            )
        return chain
    if provider:
        chain = [e for e in route if e[0] == provider]
        if not chain:
            raise DomainError(
                400,
                "unknown_model",
                f"The {task or settings.AI_DEFAULT_TASK!r} route has no {provider} model; name a model.",
            )
        return chain
    return route
