#!/usr/bin/env python
import os
import sys
from pathlib import Path

# `make run` writes development secrets here. When it exists and no env file
# was chosen (DJANGO_ENV_FILE, even empty, means a choice was made), manage.py
# uses it, so `python manage.py shell` works in a checkout where `make run` ran.
DEV_ENV_FILE = "var/dev.env"


def main():
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    base = Path(__file__).resolve().parent
    if "DJANGO_ENV_FILE" not in os.environ and (base / DEV_ENV_FILE).exists():
        os.environ["DJANGO_ENV_FILE"] = DEV_ENV_FILE
    env_file = os.environ.get("DJANGO_ENV_FILE")
    # Which secrets and settings this command runs with is worth one line on stderr (stdout stays clean for output).
    loaded = [name for name in (".env", env_file) if name and (base / name).exists()]
    if loaded:
        print(f"manage.py: settings from the environment and {', '.join(loaded)}", file=sys.stderr)
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
