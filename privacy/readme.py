"""README.txt of an export: what each file is and the shape of the JSON files."""

from django.utils import timezone

from . import registry

INTRO = """\
Your data from the Integration Hub
==================================

Export {export_id} for account {username}, built {built:%Y-%m-%d %H:%M} UTC.
{versions}

Shape of the JSON files
-----------------------
Each <app>.json file is one JSON object: {{"app": "<app>", "<section>": [row, ...], ...}}.
Every row is one database record as the hub stores it: ids are the hub's own numbers,
`*_id` fields point at rows in the same or another file, times are ISO 8601 in UTC, money is
either integer minor units with a currency (payments) or a decimal string in USD (costs).
Credentials are never exported: OAuth tokens, API token secrets and webhook secrets are left out.

Files
-----
"""


def export_readme(*, user, export, files, omitted=()):
    versions = (
        "Documents: every stored version."
        if export.include_all_versions
        else "Documents: the current version of each document (ask for all versions if you need them)."
    )
    text = INTRO.format(export_id=export.pk, username=user.get_username(), built=timezone.now(), versions=versions)
    for name, description in files:
        text += f"- {name}: {description}\n"
    if omitted:
        text += "\nLeft out\n--------\n"
        for name, note in omitted:
            text += f"- {name}: {note}\n"
    text += "\nWhat each part of the hub holds\n-------------------------------\n"
    for h in registry.holders():
        if h.description:
            text += f"- {h.app}: {h.description}"
            if h.retention:
                text += f" Kept: {h.retention}"
            text += "\n"
    return text
