"""docs/security.md's threat model names tests that exist: a row whose test was renamed or removed fails here."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SECTION = re.compile(r"## Threat model: who can get around it\n(.*?)\n## ", re.S)
ALIAS = re.compile(r"`(\w+)` is `([\w/]+\.py)`")
# A reference: `path.py`, `path.py::test_name`, `alias::test_name` or `::test_name` (same file as the one before).
REFERENCE = re.compile(r"`((?:[\w/]+\.py|\w+)?)(?:::(\w+))?`")


def _references() -> list[tuple[str, str]]:
    section = SECTION.search((ROOT / "docs" / "security.md").read_text()).group(1)
    aliases = dict(ALIAS.findall(section))
    found: list[tuple[str, str]] = []
    for line in section.splitlines():
        if not line.startswith("| ") or line.startswith("| who") or line.startswith("|---"):
            continue
        tests_cell = line.rstrip(" |").rsplit(" | ", 1)[-1]
        current = ""
        for path, name in REFERENCE.findall(tests_cell):
            if path:
                current = aliases.get(path, path)
            if current.endswith(".py"):
                found.append((current, name))
    return found


def test_every_test_the_threat_model_names_exists() -> None:
    references = _references()
    assert len(references) >= 40  # the table has not been emptied or unparsed
    missing = []
    for path, name in references:
        file = ROOT / "tests" / path
        if not file.is_file():
            missing.append(f"tests/{path}")
        elif name and f"def {name}(" not in file.read_text():
            missing.append(f"tests/{path}::{name}")
    assert not missing, missing
