"""What Teams notifications lead to (task bodies): recordings and transcripts booked, attendance reports read."""

import datetime as dt

from django.db import transaction

from integrations.task_base import enqueue_on_commit

from .. import lifecycle
from ..calendars.times import parse_instant
from ..models import Meeting, MeetingAttendance
from ..providers import teams
from .subscriptions import ARTIFACT_KINDS, KINDS, _meeting, granted

ATTENDANCE_SCOPES = ("OnlineMeetingArtifact.Read.All",)
JOIN_SNAP = dt.timedelta(seconds=60)


def artifact_book(*, meeting_id, kind, artifact_id):
    """A recording or transcript became available: read its metadata and book it (a repeat changes nothing)."""
    from .. import services
    from ..tasks import teams_attendance_task

    meeting = _meeting(meeting_id)
    spec = KINDS.get(kind) if kind in ARTIFACT_KINDS else None
    if meeting is None or spec is None or not meeting.external_uuid:
        return "skipped"
    if not granted(meeting.connection, spec.scopes):
        return "not_granted"
    file = teams.artifact_get(
        conn=meeting.connection, online_id=meeting.external_uuid, kind=spec.collection, artifact_id=artifact_id
    )
    if file is None:
        return "gone"
    services.recordings_upsert(meeting=meeting, files=[file])
    # An artifact exists only after the call ended: its attendance report is ready too.
    enqueue_on_commit(teams_attendance_task, meeting.pk)
    return "booked"


def artifacts_catch_up(*, meeting_id):
    """Graph says notifications were missed: list the meeting's recordings and transcripts and book them, and
    read its attendance report again (what missed call events would have said)."""
    from .. import services
    from ..tasks import teams_attendance_task

    meeting = _meeting(meeting_id)
    if meeting is None or not meeting.external_uuid:
        return 0
    conn = meeting.connection
    enqueue_on_commit(teams_attendance_task, meeting.pk)
    if not granted(conn, teams.RECORDING_SCOPES):
        return 0
    files = teams.recordings_list(
        conn=conn, online_id=meeting.external_uuid, transcripts=granted(conn, teams.TRANSCRIPT_SCOPES)
    )
    services.recordings_upsert(meeting=meeting, files=files)
    return len(files)


def _instant(value):
    return parse_instant(value) if value else None


def _report_join(meeting, key, joined):
    """A report's join time, snapped to a live roster join of the same person within JOIN_SNAP (the two sources
    stamp the same join a moment apart; one stretch must stay one row)."""
    if joined is None:
        return None
    near = (
        MeetingAttendance.objects.filter(
            meeting=meeting, participant_key=key[:255], joined_at__range=(joined - JOIN_SNAP, joined + JOIN_SNAP)
        )
        .order_by("joined_at")
        .first()
    )
    return near.joined_at if near else joined


def attendance_fetch(*, meeting_id):
    """Read the meeting's attendance reports: its real start and end, and every join/leave interval.

    Idempotent and order-free: the state machine takes the report's own times (an ended meeting is not
    reopened by an older start), and each interval lands on the attendance row of its join time.
    """
    meeting = _meeting(meeting_id)
    if meeting is None or not meeting.external_uuid:
        return "skipped"
    if not granted(meeting.connection, ATTENDANCE_SCOPES):
        return "not_granted"
    reports = teams.attendance_reports(conn=meeting.connection, online_id=meeting.external_uuid)
    reports.sort(key=lambda r: r.meeting_start or "")
    with transaction.atomic():
        for report in reports:
            started, ended = _instant(report.meeting_start), _instant(report.meeting_end)
            if started:
                lifecycle.meeting_moved(
                    meeting=meeting, status=Meeting.Status.STARTED, occurred_at=started, when=started
                )
            if ended:
                lifecycle.meeting_moved(meeting=meeting, status=Meeting.Status.ENDED, occurred_at=ended, when=ended)
            for interval in report.intervals:
                lifecycle.attendance_record(
                    meeting=meeting,
                    key=interval.key,
                    email=interval.email,
                    name=interval.name,
                    joined_at=_report_join(meeting, interval.key, _instant(interval.joined_at)),
                    left_at=_instant(interval.left_at),
                )
    return f"{len(reports)} reports"
