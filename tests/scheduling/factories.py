import datetime as dt

import factory

from scheduling.models import Calendar, Meeting, MeetingRecording

from ..factories import UserFactory


class MeetingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Meeting

    owner = factory.SubFactory(UserFactory)
    provider = Meeting.Provider.ZOOM
    external_id = factory.Sequence(lambda n: str(85746000000 + n))
    topic = "Weekly sync"
    start_time = factory.LazyFunction(lambda: dt.datetime.now(dt.UTC) + dt.timedelta(days=3))
    duration_minutes = 30
    join_url = factory.LazyAttribute(lambda m: f"https://us02web.zoom.us/j/{m.external_id}")


class CalendarFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Calendar

    connection = factory.SubFactory(
        "tests.integrations.factories.ConnectionFactory", provider="google_oauth", capabilities=["calendar"]
    )
    owner = factory.LazyAttribute(lambda c: c.connection.owner)
    kind = Calendar.Kind.GOOGLE
    external_id = factory.Sequence(lambda n: f"person{n}@example.com")
    name = "Personal"
    time_zone = "Europe/Berlin"


class MeetingRecordingFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = MeetingRecording

    meeting = factory.SubFactory(MeetingFactory)
    external_id = factory.Sequence(lambda n: f"rec-{n}")
    file_type = "MP4"
    download_url = "https://zoom-storage.test/rec/download/1"
