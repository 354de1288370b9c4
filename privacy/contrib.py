"""What Django's own apps and django-axes hold about a user (declared here: those apps are not ours to edit)."""

from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.contrib.sessions.models import Session
from django.db.models import Q
from django.utils import timezone

from .registry import PrivacyHolder, register
from .writer import rows


def _profile(user):
    yield {
        "id": user.pk,
        "username": user.get_username(),
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": user.date_joined,
        "last_login": user.last_login,
        "is_active": user.is_active,
        "is_staff": user.is_staff,
    }


def export_auth(user, out):
    out.json("account", {"user": _profile(user)}, description="Your account: user name, email, names, dates.")


def erase_auth(user, report):
    """Last of all: the account row itself (every other holder has deleted or re-pointed its rows)."""
    deleted = get_user_model().objects.filter(pk=user.pk).delete()[0]
    report.count("auth.User", deleted)


def _sessions_of(user):
    """Sessions are signed blobs holding the user's id: decode the live ones to find the user's."""
    ids = []
    for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator(chunk_size=500):
        if str(session.get_decoded().get("_auth_user_id")) == str(user.pk):
            ids.append(session.pk)
    return ids


def end_sessions(user, report):
    deleted = Session.objects.filter(pk__in=_sessions_of(user)).delete()[0]
    report.count("sessions.Session", deleted)


def export_admin(user, out):
    out.json(
        "admin",
        {"log_entries": rows(LogEntry.objects.filter(user=user), exclude=("user",))},
        description="Changes you made in the admin site (staff only).",
    )


def erase_admin(user, report):
    report.count("admin.LogEntry", LogEntry.objects.filter(user=user).delete()[0])
    # Staff members' entries about the user's account or rows name them in object_repr (str(user) is the
    # user name; str(Customer), str(Subscription) start with it): the entries stay, the names go.
    about = Q(content_type=ContentType.objects.get_for_model(get_user_model()), object_id=str(user.pk))
    for name in {user.get_username(), user.email} - {""}:
        about |= Q(object_repr__contains=name)
    report.count("admin.LogEntry.redacted", LogEntry.objects.filter(about).update(object_repr="(erased user)"))


def _axes_models():
    from axes.models import AccessAttempt, AccessFailureLog, AccessLog

    return {"access_attempts": AccessAttempt, "access_failures": AccessFailureLog, "access_log": AccessLog}


def export_axes(user, out):
    sections = {
        name: rows(model.objects.filter(username=user.get_username()), exclude=("username",))
        for name, model in _axes_models().items()
    }
    out.json("logins", sections, description="Sign-ins and failed sign-ins with your user name: time, IP, browser.")


def erase_axes(user, report):
    for model in _axes_models().values():
        report.count(model._meta.label, model.objects.filter(username=user.get_username()).delete()[0])


register(
    PrivacyHolder(
        app="auth",
        models=("auth.User",),
        export=export_auth,
        erase=erase_auth,
        description="Your account (user name, email, names, sign-in dates).",
        retention="until erasure.",
        order=1000,
    )
)
register(
    PrivacyHolder(
        app="sessions",
        models=(),  # no foreign key: the session blob holds the user's id
        disconnect=end_sessions,
        erase=end_sessions,
        description="Browser sessions (signed cookies' server side).",
        retention="until sign-out or expiry (2 weeks).",
    )
)
register(
    PrivacyHolder(
        app="admin",
        models=("admin.LogEntry",),
        export=export_admin,
        erase=erase_admin,
        description="Django admin's change history of staff users.",
        retention="until erasure; the audit trail keeps what staff did.",
    )
)
register(
    PrivacyHolder(
        app="axes",
        models=("axes.AccessAttempt", "axes.AccessFailureLog", "axes.AccessLog"),  # by user name, not a key
        export=export_axes,
        erase=erase_axes,
        description="Sign-in attempts by user name (IP address, browser) for lockout after repeated failures.",
        retention="until erasure or an axes reset.",
    )
)
