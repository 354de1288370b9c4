"""What scheduling holds about a user (privacy registry): meetings, participants, attendance, recordings (metadata,
and the copies in the hub's storage when the user opted in), preferences, the calendars and events synced from
their Google and Microsoft connections, and the record of each Zoom/Webex create made with an Idempotency-Key."""

from django.conf import settings

from documents.providers import backend_for
from privacy.registry import PrivacyHolder, register
from privacy.storage import s3_delete_all_versions, s3_delete_prefix_all_versions
from privacy.writer import rows, safe_name

from .models import (
    Calendar,
    CalendarEvent,
    Meeting,
    MeetingAttendance,
    MeetingCreate,
    MeetingParticipant,
    MeetingRecording,
    MeetingSubscription,
    SchedulingPreference,
)
from .recordings import storage_prefix_for
from .teams_lifecycle import subscriptions_close_for_owner


def export_scheduling(user, out):
    recordings = MeetingRecording.objects.filter(meeting__owner=user)
    out.json(
        "scheduling",
        {
            "meetings": rows(Meeting.objects.filter(owner=user), exclude=("owner",)),
            "participants": rows(MeetingParticipant.objects.filter(meeting__owner=user)),
            "attendance": rows(MeetingAttendance.objects.filter(meeting__owner=user)),
            "recordings": rows(recordings, exclude=("storage_key", "next_attempt_at", "outbox_sweeps")),
            "lifecycle_subscriptions": rows(
                MeetingSubscription.objects.filter(meeting__owner=user), exclude=("client_state", "raw")
            ),
            "preferences": rows(SchedulingPreference.objects.filter(owner=user), exclude=("owner",)),
            "calendars": rows(
                Calendar.objects.filter(owner=user),
                exclude=("owner", "client_state", "sync_token", "delta_link", "raw"),
            ),
            "calendar_events": rows(CalendarEvent.objects.filter(calendar__owner=user), exclude=("raw",)),
            # The create id is a digest of the key and the request, which means nothing to anyone; left out.
            "meeting_creates": rows(MeetingCreate.objects.filter(owner=user), exclude=("owner", "create_id")),
        },
        description=(
            "Your video meetings (topic, times, join links), participants, attendance (who joined and left when), "
            "the recordings' metadata, your preferences, your calendars with the events synced from them, and "
            "which meeting each Zoom or Webex create made with an Idempotency-Key made."
        ),
    )
    copied = recordings.filter(copy_status=MeetingRecording.Copy.COPIED).order_by("meeting_id", "pk")
    for recording in copied.iterator(chunk_size=100):
        kind = safe_name(recording.file_type.lower() or "bin")
        name = f"meeting-recordings/{recording.meeting_id}/{recording.pk}.{kind}"
        backend_for(recording.storage_backend).read_into(
            recording.storage_key, lambda chunks, name=name: out.file(name, chunks), owner=user
        )
    if copied.exists():
        out.files.append(
            ("meeting-recordings/", "Meeting recordings the hub copied for you: <meeting id>/<recording id>.<type>.")
        )


def _erase_recording_copies(user):
    """Every copy the rows name (on S3 every version and delete marker), then anything an interrupted copy left
    under the user's own folder. How many objects were deleted."""
    objects = 0
    for recording in MeetingRecording.objects.filter(meeting__owner=user).exclude(storage_key=""):
        if recording.storage_backend == "s3":
            objects += s3_delete_all_versions(recording.storage_key, owner=user)
        else:
            backend_for(recording.storage_backend or "local").delete(recording.storage_key, owner=user)
            objects += 1
    prefix = storage_prefix_for(user.pk)
    if settings.S3_BUCKET:
        objects += s3_delete_prefix_all_versions(prefix, owner=user)
    local = backend_for("local")
    for key, _ in local.list_objects(prefix):
        local.delete(key)
        objects += 1
    return objects


def erase_scheduling(user, report):
    report.provider("scheduling.recording_copies_deleted", _erase_recording_copies(user))
    # Teams meeting subscriptions the disconnect hooks did not reach (live call events use the app's own token).
    report.provider("scheduling.teams_subscriptions_deleted", subscriptions_close_for_owner(user))
    # Local copies only: the events live in the user's own Google/Microsoft account (the connection's
    # disconnect hook closes the push channels while its tokens still work).
    report.count("scheduling.CalendarEvent", CalendarEvent.objects.filter(calendar__owner=user).delete()[0])
    report.count("scheduling.Calendar", Calendar.objects.filter(owner=user).delete()[0])
    report.count("scheduling.MeetingAttendance", MeetingAttendance.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingRecording", MeetingRecording.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingSubscription", MeetingSubscription.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingParticipant", MeetingParticipant.objects.filter(meeting__owner=user).delete()[0])
    report.count("scheduling.MeetingCreate", MeetingCreate.objects.filter(owner=user).delete()[0])
    report.count("scheduling.Meeting", Meeting.objects.filter(owner=user).delete()[0])
    report.count("scheduling.SchedulingPreference", SchedulingPreference.objects.filter(owner=user).delete()[0])


def references(user):
    refs = set()
    for ext, uuid in Meeting.objects.filter(owner=user).values_list("external_id", "external_uuid"):
        refs |= {ext, uuid}
    refs |= set(MeetingSubscription.objects.filter(meeting__owner=user).values_list("external_id", flat=True))
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
            "scheduling.MeetingAttendance",
            "scheduling.MeetingRecording",
            "scheduling.MeetingSubscription",
            "scheduling.MeetingCreate",
            "scheduling.SchedulingPreference",
            "scheduling.Calendar",
            "scheduling.CalendarEvent",
        ),
        export=export_scheduling,
        erase=erase_scheduling,
        references=references,
        description=(
            "Meetings you created on Zoom, Meet, Teams or Webex, their participants and attendance, the recordings' "
            "metadata and the copies of your recordings in the hub's storage if you asked for them; your Google and "
            "Microsoft calendars and the events synced from them."
        ),
        retention="until erasure (the meetings themselves live in your provider account).",
    )
)
