"""The failures a REST fake plays before or after answering (FakeWebex, FakeZoom): one place for both.

`fail_next`: each item is played instead of the request (an httpx exception: the connection itself fails and
nothing reached the provider; or `(status, body, headers)`). `lose_next`: the request is applied, then its answer
is lost (an httpx exception, or `(status, body)`, e.g. a 502 after the meeting exists).
"""

import httpx


def answered(fake, request):
    """`fake._answer(request)` with the fake's planned failures played around it."""
    if fake.fail_next:
        if isinstance(fake.fail_next[0], Exception):
            raise fake.fail_next.pop(0)
        status, body, headers = fake.fail_next.pop(0)
        return httpx.Response(status, json=body, headers=headers)
    response = fake._answer(request)
    if fake.lose_next:
        lost = fake.lose_next.pop(0)
        if isinstance(lost, Exception):
            raise lost
        return httpx.Response(lost[0], json=lost[1])
    return response
