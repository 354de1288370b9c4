"""Teams meeting lifecycle through Microsoft Graph change notifications (issue 19 point 7).

What Graph offers, and with which permission (Microsoft Graph docs: "Get change notifications for meeting
transcripts and recordings", "... for Microsoft Teams meeting call event updates", meetingAttendanceReport):

| Event                          | Graph source                                              | Permission                         |
|--------------------------------|-----------------------------------------------------------|------------------------------------|
| recording available            | subscription `communications/onlineMeetings/{id}/recordings`  | delegated OnlineMeetingRecording.Read.All |
| transcript available           | subscription `communications/onlineMeetings/{id}/transcripts` | delegated OnlineMeetingTranscript.Read.All (only if made before transcription starts) |
| joins / leaves, start and end  | GET `/me/onlineMeetings/{id}/attendanceReports` (after the call) | delegated OnlineMeetingArtifact.Read.All |
| call started / ended / roster, live | subscription `communications/onlineMeetings(joinWebUrl='...')/meetingCallEvents` | application only (OnlineMeetings.Read.All), beta; only rich (encrypted) notifications carry the event |
| call records                   | subscription `communications/callRecords`                 | application only (CallRecords.Read.All), tenant-wide |

The hub uses what a delegated app can do with the organizer's own connection: one subscription per meeting and
artifact kind (MeetingSubscription rows, kind `graph_recordings` / `graph_transcripts`), made by a task right
after the meeting is created (so a transcript started later is still announced), renewed by the hourly beat
while the meeting may still produce artifacts (until TEAMS_LISTEN_AFTER_END_HOURS after it ended or was due to
end), deleted when the meeting is cancelled and when the connection is removed (also on erasure) while its
token works. A notification names the recording or transcript; a task reads its metadata and books it with
`services.recordings_upsert` (copied to the hub's storage when the owner opted in). Attendance and the
meeting's real start and end come from the attendance report, read after a recording or transcript arrives
and once more when the hub stops listening.

Live call events (kind `graph_call_events`) need what a delegated app cannot have: the hub app's own token in
one tenant (MICROSOFT_APP_TENANT_ID, client credentials through msal, an admin's consent to
OnlineMeetings.Read.All) and a certificate, since only rich notifications (encrypted to it) say what happened.
With all of it set they are subscribed for organizers in that tenant and applied by the webhook handler
(call_events.py); without it GET /api/v1/scheduling/providers/ lists them under `unavailable` with what is
missing, and nothing is attempted. Call records (`communications/callRecords`, tenant-wide, application
CallRecords.Read.All) are not used: the attendance report says the same per meeting.

Every Graph request is one gateway attempt (one ProviderCall) in a task, never in a request or in the inbox's
batch transaction. Everything here is idempotent: a task run twice renews instead of creating twice, a
recording booked twice is one row, attendance intervals land on one row per join.
"""

from .call_events import call_event_apply, call_events_for, call_events_missing
from .records import ATTENDANCE_SCOPES, artifact_book, artifacts_catch_up, attendance_fetch
from .subscriptions import (
    ARTIFACT_KINDS,
    CALL_EVENTS,
    KINDS,
    granted,
    listening,
    meeting_cancelled,
    meeting_created,
    meeting_subscribe,
    meeting_unsubscribe,
    notification_url,
    subscription_retry,
    subscriptions_close_for_owner,
    subscriptions_renew_due,
    teams_unsubscribe_connection,
    wanted_kinds,
)

__all__ = [
    "ARTIFACT_KINDS",
    "ATTENDANCE_SCOPES",
    "CALL_EVENTS",
    "KINDS",
    "artifact_book",
    "artifacts_catch_up",
    "attendance_fetch",
    "call_event_apply",
    "call_events_for",
    "call_events_missing",
    "granted",
    "listening",
    "meeting_cancelled",
    "meeting_created",
    "meeting_subscribe",
    "meeting_unsubscribe",
    "notification_url",
    "subscription_retry",
    "subscriptions_close_for_owner",
    "subscriptions_renew_due",
    "teams_unsubscribe_connection",
    "wanted_kinds",
]
