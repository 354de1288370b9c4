"""What scheduling holds about a user (privacy registry): meetings, participants, recording metadata."""

from privacy.registry import PrivacyHolder, register
from privacy.writer import rows

from .models import Meeting, MeetingParticipant, MeetingRecording


def export_scheduling(user, out):
    out.json(
        "scheduling",
        {
            "meetings": rows(Meeting.objects.filter(owner=user), exclude=("owner",)),
            "participants": rows(MeetingParticipant.objects.filter(meeting__owner=user)),
            "recordings": rows(MeetingRecording.objects.filter(meeting__owner=user)),
        },
        description="Your video meetings (topic, times, join links), participants, and the recordings' metadata.",
    )


def erase_scheduling(user, report):
    report.count("scheduling.MeetingRecording", MeetingRecording.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingParticipant", MeetingParticipant.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.Meeting", Meeting.objects.filter(owner=user).delete()[0])


def references(user):
    refs = set()
    for ext, uuid in Meeting.objects.filter(owner=user).values_list("external_id", "external_uuid"):
        refs |= {ext, uuid}
    return refs - {""}


register(
    PrivacyHolder(
        app="scheduling",
        models=("scheduling.Meeting", "scheduling.MeetingParticipant", "scheduling.MeetingRecording"),
        export=export_scheduling,
        erase=erase_scheduling,
        references=references,
        description="Meetings you created on Zoom, Meet, Teams or Webex, their participants and recordings' metadata.",
        retention="until erasure (the meetings themselves live in your provider account).",
    )
)
