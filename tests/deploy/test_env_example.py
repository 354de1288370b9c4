"""`.env.example` names every variable the settings read (issue 16: the README's newcomer path needs no knowledge it
does not give), so a new setting cannot land without its line."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
READ = re.compile(r"\b(?:env(?:\.[a-z_]+)?|env_bool)\(\s*\"([A-Z][A-Z0-9_]+)\"")


def _read_by_settings():
    names = set()
    for path in (ROOT / "config" / "settings").glob("*.py"):
        names |= set(READ.findall(path.read_text()))
    return names


def test_every_variable_the_settings_read_is_named_in_env_example():
    example = (ROOT / ".env.example").read_text()
    named = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, flags=re.MULTILINE))
    read = _read_by_settings()
    assert len(read) > 200  # the pattern still finds the settings' reads
    assert sorted(read - named) == []
