"""The view-facing entry point: validate the question, gather busy time and working hours, rank the slots."""

from datetime import timedelta

from django.conf import settings

from integrations.errors import DomainError

from .busy import _sources, busy_for
from .people import _hours_for, _participants, zone
from .slots import DEFAULT_DAYS, DEFAULT_END, DEFAULT_START, free_slots

RANKING = (
    "Slots wholly inside the working hours of more participants come first; then a higher mean share of the "
    "slot inside each participant's working hours; then the earlier start."
)


def availability_find(
    *,
    caller,
    users,
    start,
    end,
    duration_minutes,
    time_zone="",
    working_hours=None,
    granularity_minutes=15,
    working_hours_policy="preferred",
    max_results=20,
):
    """The common free slots of `users` ([{"id": n, "working_hours": {...}|None}]) in [start, end), ranked."""
    if end <= start:
        raise DomainError(400, "invalid", "end: the window must end after it starts.", field="end")
    if end - start > timedelta(days=settings.AVAILABILITY_MAX_WINDOW_DAYS):
        raise DomainError(
            400,
            "invalid",
            f"end: the window may span at most {settings.AVAILABILITY_MAX_WINDOW_DAYS} days.",
            field="end",
        )
    duration = timedelta(minutes=duration_minutes)
    if duration_minutes <= 0:
        raise DomainError(400, "invalid", "duration_minutes: must be at least 1.", field="duration_minutes")
    if duration > end - start:
        raise DomainError(400, "invalid", "duration_minutes: longer than the window.", field="duration_minutes")
    if time_zone:
        zone(time_zone, "time_zone")
    # The request's default hours may name their own zone (a WorkingHours object, like each user's); `time_zone`
    # is the zone for hours that name none.
    default_zone = (working_hours or {}).get("time_zone") or time_zone or "UTC"
    default = {
        "time_zone": default_zone,
        "days": list((working_hours or {}).get("days") or DEFAULT_DAYS),
        "start": (working_hours or {}).get("start") or DEFAULT_START,
        "end": (working_hours or {}).get("end") or DEFAULT_END,
    }

    ids = list(dict.fromkeys(u["id"] for u in users))
    asked = {u["id"]: u.get("working_hours") for u in users}
    people = _participants(caller, ids)
    sources = _sources(people)
    busy, from_cache = busy_for([s for ss in sources.values() for s in ss], caller=caller, start=start, end=end)

    hours, used = {}, []
    for person in people:
        answers = [busy[s.connection.pk] for s in sources[person.pk]]
        stored = next((a.working_hours for a in answers if a.working_hours), None)
        hours[person.pk], origin = _hours_for(asked.get(person.pk), stored, default)
        wh = hours[person.pk]
        used.append(
            {
                "id": person.pk,
                "working_hours": {
                    "time_zone": wh.time_zone.key,
                    "days": sorted(wh.days),
                    "start": wh.start.strftime("%H:%M"),
                    "end": wh.end.strftime("%H:%M"),
                    "source": origin,
                },
            }
        )

    busy_by_user = {
        person.pk: [i for s in sources[person.pk] for i in busy[s.connection.pk].intervals] for person in people
    }
    slots = free_slots(
        start=start,
        end=end,
        duration=duration,
        busy=busy_by_user,
        hours=hours,
        granularity=timedelta(minutes=granularity_minutes),
        policy=working_hours_policy,
        limit=max_results,
    )
    warnings = [
        {
            "user": caller.pk,
            "connection": s.connection.pk,
            "detail": f"{len(busy[s.connection.pk].skipped)} calendar(s) no longer exist at the provider; left out.",
        }
        for s in sources.get(caller.pk, [])
        if busy[s.connection.pk].skipped
    ]
    return {
        "start": start,
        "end": end,
        "duration_minutes": duration_minutes,
        "granularity_minutes": granularity_minutes,
        "working_hours_policy": working_hours_policy,
        "ranking": RANKING,
        "users": used,
        "slots": [
            {
                "start": s.start,
                "end": s.end,
                "score": s.score,
                "inside_working_hours": s.inside,
                "outside_working_hours_of": list(s.outside),
            }
            for s in slots
        ],
        "connections": {"asked": len(busy) - from_cache, "cached": from_cache},
        "warnings": warnings,
    }
