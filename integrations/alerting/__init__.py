"""Alerts that reach people: channels, notices (opened, reminder, resolved) and the thresholds beat evaluates.

- `notify.py`: which channels hear of an alert, one AlertDelivery row per
  notice, sent by the `integrations.alert_deliver` task (retries, backoff).
- `channels.py`: the senders (email through Django's backend, a Slack-compatible
  incoming webhook, a signed generic webhook), each one gateway attempt.
- `thresholds.py`: figures checked every ALERT_EVALUATE_INTERVAL_SECONDS; an
  alert it raised resolves itself (and says so) once the figure is back under.
- `counters.py`: short-lived counters in the cache (webhook signature failures).
"""
