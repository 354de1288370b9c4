from .models import AuditEvent


def _actor_label(actor):
    if actor is None or not getattr(actor, "is_authenticated", False):
        return "system"
    kind = "staff" if actor.is_staff else "user"
    return f"{kind}:{actor.get_username()}"


def _target(target):
    if target is None:
        return "", "", ""
    if isinstance(target, tuple):  # ("provider", "stripe") for things that are not rows
        kind, ident = target
        return str(kind)[:64], str(ident)[:64], ""
    return target._meta.label_lower[:64], str(target.pk)[:64], str(target)[:200]


def audit_record(*, action, actor=None, target=None, outcome=AuditEvent.Outcome.OK, request=None, **details):
    """Append one audit event. `target` is a model instance or a (type, id) pair; `details` must be JSON-able.

    Never put secrets or message bodies in `details`: the trail is kept for years.
    """
    if actor is None and request is not None:
        actor = getattr(request, "user", None)
    target_type, target_id, target_label = _target(target)
    return AuditEvent.objects.create(
        actor=actor if getattr(actor, "is_authenticated", False) else None,
        actor_label=_actor_label(actor),
        action=action,
        target_type=target_type,
        target_id=target_id,
        target_label=target_label,
        outcome=outcome,
        ip=_client_ip(request),
        request_id=getattr(request, "request_id", "") if request is not None else _current_request_id(),
        details=details,
    )


def _current_request_id():
    from integrations.context import get_request_id

    return get_request_id() or ""


def _client_ip(request):
    """The caller's address as our own proxies saw it (TRUSTED_PROXY_COUNT), or None."""
    if request is None:
        return None
    import ipaddress

    from ..auth.throttle import client_ip

    try:
        return str(ipaddress.ip_address(client_ip(request)))
    except ValueError:
        return None
