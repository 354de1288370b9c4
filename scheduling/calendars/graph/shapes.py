"""Graph event to EventData: fields, zones, original start, cancelledOccurrences as EXDATE lines."""

import datetime as dt
import logging

from .. import recurrence, times
from ..types import EventData

logger = logging.getLogger(__package__)

# What a GET of one event asks for. `$select` is the only way to get cancelledOccurrences, and Graph then
# answers only what is named, so this names everything event_data reads (and what staff see in `raw`).
EVENT_SELECT = ",".join(
    (
        "id",
        "type",
        "subject",
        "body",
        "location",
        "start",
        "end",
        "isAllDay",
        "isCancelled",
        "originalStart",
        "originalStartTimeZone",
        "originalEndTimeZone",
        "seriesMasterId",
        "recurrence",
        "cancelledOccurrences",
        "attendees",
        "organizer",
        "isReminderOn",
        "reminderMinutesBeforeStart",
        "sensitivity",
        "showAs",
        "isOnlineMeeting",
        "onlineMeeting",
        "iCalUId",
        "changeKey",
        "webLink",
        "lastModifiedDateTime",
    )
)
RESPONSES = {
    "none": "needsAction",
    "notResponded": "needsAction",
    "organizer": "accepted",
    "accepted": "accepted",
    "tentativelyAccepted": "tentative",
    "declined": "declined",
}
SENSITIVITY = {"normal": "default", "personal": "private", "private": "private", "confidential": "confidential"}


def _reminders(item):
    if not item.get("isReminderOn"):
        return {"use_default": False, "overrides": []}
    return {
        "use_default": False,
        "overrides": [{"method": "popup", "minutes": int(item.get("reminderMinutesBeforeStart") or 0)}],
    }


def event_data(item, *, calendar_zone="UTC"):
    if "@removed" in item:
        return EventData(external_id=item["id"], status="cancelled", raw=item)
    start, end = item.get("start") or {}, item.get("end") or {}
    tz_name = times.from_provider_zone(
        item.get("originalStartTimeZone") or start.get("timeZone"), default=calendar_zone
    )
    all_day = bool(item.get("isAllDay"))
    data = EventData(
        external_id=item["id"],
        status="cancelled" if item.get("isCancelled") else "confirmed",
        etag=item.get("@odata.etag") or item.get("changeKey") or "",
        ical_uid=item.get("iCalUId") or "",
        title=item.get("subject") or "",
        description=(item.get("body") or {}).get("content") or "",
        location=(item.get("location") or {}).get("displayName") or "",
        all_day=all_day,
        time_zone=tz_name,
        attendees=[
            {
                "email": (a.get("emailAddress") or {}).get("address", ""),
                "name": (a.get("emailAddress") or {}).get("name", ""),
                "response_status": RESPONSES.get((a.get("status") or {}).get("response", "none"), "needsAction"),
                "optional": a.get("type") == "optional",
                "organizer": (a.get("status") or {}).get("response") == "organizer",
            }
            for a in item.get("attendees") or []
        ],
        reminders=_reminders(item),
        visibility=SENSITIVITY.get(item.get("sensitivity") or "normal", "default"),
        recurring_event_id=item.get("seriesMasterId") or "",
        original_start=_original_start(item, tz_name, all_day),
        html_link=item.get("webLink") or "",
        provider_updated_at=times.parse_instant(item["lastModifiedDateTime"])
        if item.get("lastModifiedDateTime")
        else None,
        raw=item,
    )
    if start.get("dateTime"):
        if all_day:
            data.start_date = dt.date.fromisoformat(start["dateTime"][:10])
            data.end_date = dt.date.fromisoformat(end["dateTime"][:10])
        else:
            data.start = times.parse_instant(
                start["dateTime"], times.from_provider_zone(start.get("timeZone"), tz_name)
            )
            data.end = times.parse_instant(end["dateTime"], times.from_provider_zone(end.get("timeZone"), tz_name))
    if item.get("recurrence"):
        parts = recurrence.from_graph(item["recurrence"], tz_name=tz_name, all_day=all_day)
        data.recurrence = [recurrence.format_rule(parts), *_cancelled_exdates(item, data)]
    return data


def _original_start(item, tz_name, all_day):
    """The occurrence's planned start (UTC). For an all-day series the hub keeps the planned date at 00:00 UTC
    (Google's form): Graph's instant is read as that date whether it is the local midnight or the UTC one."""
    if not item.get("originalStart"):
        return None
    moment = times.parse_instant(item["originalStart"])
    if not all_day:
        return moment
    local = times.wall(moment, tz_name)
    day = local.date() if local.time().replace(tzinfo=None) == dt.time(0, 0) else moment.date()
    return dt.datetime.combine(day, dt.time(0, 0), tzinfo=dt.UTC)


def _cancelled_exdates(item, data):
    """EXDATE lines for a series master's cancelledOccurrences ("OID.{seriesMasterId}.{yyyy-mm-dd}").

    The date is the occurrence's day in the series' zone: an all-day series excludes that date, a timed one
    that day at the series' own wall-clock start (so 09:00 New York is 13:00 or 14:00 UTC, as DST has it).
    """
    days = []
    for oid in item.get("cancelledOccurrences") or []:
        try:
            days.append(dt.date.fromisoformat(str(oid).rsplit(".", 1)[1]))
        except (IndexError, ValueError):
            logger.warning("unreadable cancelledOccurrences entry left out", extra={"event": item.get("id")})
    if not days:
        return []
    if data.all_day:
        return recurrence.exdate_line(days, data.time_zone)
    if data.start is None:
        return []
    zone, local = times.zone(data.time_zone), times.wall(data.start, data.time_zone)
    moments = [dt.datetime.combine(day, local.time().replace(tzinfo=None), tzinfo=zone) for day in days]
    return recurrence.exdate_line([m.astimezone(dt.UTC) for m in moments], data.time_zone)
