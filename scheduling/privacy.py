"""What scheduling holds about a user (privacy registry): meetings, participants, recording metadata, and the
calendars and events synced from their Google and Microsoft connections."""

from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import Calendar, CalendarEvent, Meeting, MeetingParticipant, MeetingRecording


def export_scheduling(user, out):
    out.json(
        "scheduling",
        {
            "meetings": rows(Meeting.objects.filter(owner=user), exclude=("owner",)),
            "participants": rows(MeetingParticipant.objects.filter(meeting__owner=user)),
            "recordings": rows(MeetingRecording.objects.filter(meeting__owner=user)),
            "calendars": rows(
                Calendar.objects.filter(owner=user),
                exclude=("owner", "client_state", "sync_token", "delta_link", "raw"),
            ),
            "calendar_events": rows(CalendarEvent.objects.filter(calendar__owner=user), exclude=("raw",)),
        },
        description="Your video meetings (topic, times, join links), participants, the recordings' metadata, "
        "and your calendars with the events synced from them.",
    )


def erase_scheduling(user, report):
    # Local copies only: the events live in the user's own Google/Microsoft account (the connection's
    # disconnect hook closes the push channels while its tokens still work).
    report.count("scheduling.CalendarEvent", CalendarEvent.objects.filter(calendar__owner=user).delete()[0])
    report.count("scheduling.Calendar", Calendar.objects.filter(owner=user).delete()[0])
    report.count("scheduling.MeetingRecording", MeetingRecording.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingParticipant", MeetingParticipant.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.Meeting", Meeting.objects.filter(owner=user).delete()[0])


def references(user):
    refs = set()
    for ext, uuid in Meeting.objects.filter(owner=user).values_list("external_id", "external_uuid"):
        refs |= {ext, uuid}
    for ext, channel, sub in Calendar.objects.filter(owner=user).values_list(
        "external_id", "channel_id", "subscription_id"
    ):
        refs |= {ext, channel, sub}
    return refs - {""}


register(
    PrivacyHolder(
        app="scheduling",
        models=(
            "scheduling.Meeting",
            "scheduling.MeetingParticipant",
            "scheduling.MeetingRecording",
            "scheduling.Calendar",
            "scheduling.CalendarEvent",
        ),
        export=export_scheduling,
        erase=erase_scheduling,
        references=references,
        description=(
            "Meetings you created on Zoom, Meet, Teams or Webex, their participants and recordings' metadata; "
            "your Google and Microsoft calendars and the events synced from them."
        ),
        retention="until erasure (the meetings themselves live in your provider account).",
    )
)
