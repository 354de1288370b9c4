import datetime as dt

URL = "/api/v1/scheduling/meetings/"


def later(days=7):
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def body(provider, **extra):
    return {"provider": provider, "topic": "Quarterly review", "start_time": later(), "duration_minutes": 45,
            "time_zone": "Europe/Berlin", **extra}  # fmt: skip
