#!/usr/bin/env python3
"""Create or refresh .venv from a requirements file, fast and visibly (make install / install-dev / run).

    python3 scripts/install.py requirements.txt [--venv .venv]

- Skips everything when the requirements did not change since the last
  successful install: a stamp in the venv holds the hash of the file and of
  every file it includes with `-r` (a checkout that only touches the file's
  date installs nothing; a changed pin installs again).
- Installs with uv (resolution and downloads in parallel, about ten times
  pip's speed on these requirements): the `uv` on PATH, else uv bootstrapped
  from PyPI into the venv with pip. If uv cannot be had or fails, pip does the
  install, with its progress bars on.
- Prints one line per step, so a slow network shows where the time goes.

Standard library only: it runs before the venv exists.
"""

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

# uv is a build tool, not a dependency of the hub: pinned here, not in requirements.
UV_VERSION = "0.13.8"
ROOT = Path(__file__).resolve().parent.parent


def say(message):
    print(f"==> {message}", flush=True)


def requirement_files(path, seen=None):
    """The file and every file it pulls in with -r / --requirement / -c, in order."""
    seen = [] if seen is None else seen
    path = path.resolve()
    if path in seen:
        return seen
    seen.append(path)
    for line in path.read_text().splitlines():
        match = re.match(r"\s*(?:-r|--requirement|-c|--constraint)[\s=]+(\S+)", line)
        if match:
            requirement_files(path.parent / match.group(1), seen)
    return seen


def requirements_hash(path, python):
    digest = hashlib.sha256()
    # The interpreter is part of what was installed: a new Python needs new wheels.
    digest.update(str(Path(python).resolve()).encode())
    for file in requirement_files(path):
        digest.update(file.name.encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=False, **kwargs).returncode == 0


def find_uv(venv_python, venv):
    """uv from PATH or the venv; otherwise install the pinned uv into the venv with pip."""
    if os.environ.get("HUB_INSTALLER") == "pip":
        return None
    for candidate in (shutil.which("uv"), venv / "bin" / "uv"):
        if candidate and Path(candidate).exists():
            return str(candidate)
    say(f"bootstrapping uv {UV_VERSION} from PyPI into {venv} (one download, about 20 MB)")
    if run(
        [
            venv_python,
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--progress-bar",
            "on",
            f"uv=={UV_VERSION}",
        ]
    ):
        return str(venv / "bin" / "uv")
    say("could not install uv; falling back to pip")
    return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("requirements")
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--python", default=sys.executable, help="interpreter the venv is made from")
    args = parser.parse_args(argv)

    requirements = (ROOT / args.requirements).resolve()
    venv = (ROOT / args.venv).resolve()
    venv_python = venv / "bin" / "python"
    stamp = venv / f".installed-{requirements.name}.sha256"
    started = time.monotonic()

    if not venv_python.exists():
        say(f"creating {venv.relative_to(ROOT)} with {args.python}")
        if not run([args.python, "-m", "venv", str(venv)]):
            sys.exit("could not create the virtualenv (on Debian/Ubuntu: apt-get install python3-venv)")

    wanted = requirements_hash(requirements, venv_python)
    if stamp.exists() and stamp.read_text().strip() == wanted:
        say(f"{requirements.name}: unchanged since the last install, nothing to do")
        return 0

    uv = find_uv(str(venv_python), venv)
    ok = False
    if uv:
        say(f"installing {requirements.name} with uv")
        ok = run([uv, "pip", "install", "--python", str(venv_python), "-r", str(requirements)])
        if not ok:
            say("uv failed; trying pip")
    if not ok:
        say(f"installing {requirements.name} with pip")
        ok = run(
            [
                str(venv_python),
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "on",
                "-r",
                str(requirements),
            ]
        )
    if not ok:
        sys.exit(f"installing {requirements.name} failed (see above)")
    # Installing a file installed every file it includes (requirements-dev.txt -> requirements.txt).
    for file in requirement_files(requirements):
        (venv / f".installed-{file.name}.sha256").write_text(requirements_hash(file, venv_python) + "\n")
    say(f"{requirements.name} installed in {time.monotonic() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
