"""What both Graph fakes (FakeGraph for Teams, FakeGraphCalendar) play alike: creates under a transactionId, lost answers.

An event create may carry a `transactionId` ("to avoid redundant POST operations in case of client retries to
create the same event", event resource): the same POST again is answered 201 with the event already made, and
the id with another event is 400 ErrorDuplicateTransactionId. The event shows its transactionId only when one was
set. Graph does not say what a transactionId whose event was deleted does; here it makes a new event. A method
in `lose_next` is applied and its answer lost: the client gets a read timeout.
"""

import copy

import httpx

DUPLICATE_MESSAGE = (
    "Your request can't be completed. The TransactionId specified in the request has already been used to create "
    "a different event."
)


class GraphFakeBase:
    """A subclass answers in `_answer_to(request)`, keeps its events in `self.events` and calls `_made_before`
    before making an event and `_remember` after."""

    def __init__(self):
        self.lose_next = []
        self.transactions = {}  # transactionId -> (event id, the POST that made it)

    def _handle(self, request):
        response = self._answer_to(request)
        if self.lose_next and self.lose_next[0] == request.method:
            self.lose_next.pop(0)
            raise httpx.ReadTimeout("The read operation timed out", request=request)
        return response

    def _made_before(self, body, public=dict):
        """Graph's answer to a create whose transactionId already made an event that is still there, else None."""
        tid = body.get("transactionId")
        if tid not in self.transactions or self.transactions[tid][0] not in self.events:
            return None
        eid, made_by = self.transactions[tid]
        if body != made_by:
            error = {"code": "ErrorDuplicateTransactionId", "message": DUPLICATE_MESSAGE}
            return httpx.Response(400, json={"error": error})
        return httpx.Response(201, json=public(self.events[eid]))

    def _remember(self, body, eid):
        if body.get("transactionId"):
            self.transactions[body["transactionId"]] = (eid, copy.deepcopy(body))
