"""Mail over Gmail and Outlook (Microsoft Graph): one API, one message shape, push-driven cache.

A Django app of its own (label `mail`) inside messaging, so its models and
migrations never collide with the Twilio side of messaging.
"""
