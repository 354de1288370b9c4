"""Erasure (issue 14 point 2): filled in by the next change."""


def erasure_run(*, erasure_id):
    return None


def erasures_enqueue_due():
    return 0
