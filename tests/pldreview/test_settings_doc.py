"""docs/settings.md lists every environment variable the project reads, and nothing else."""
from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("pldreview", "rules", "evaluation")
# The readers of pldreview/env.py; their first argument is the variable's name.
ENV_READERS = re.compile(r"^env_\w+$")
TABLE_ROW = re.compile(r"^\| `([A-Z][A-Z0-9_]*)` \|", re.MULTILINE)


def _name_read(call: ast.Call) -> str | None:
    """Return the variable a call reads when it is env_*("X", …), os.environ.get("X") or os.getenv("X")."""
    func = call.func
    if isinstance(func, ast.Name) and ENV_READERS.match(func.id):
        reader = True
    elif isinstance(func, ast.Attribute) and func.attr in {"get", "getenv"}:
        owner = func.value
        reader = (isinstance(owner, ast.Attribute) and owner.attr == "environ") or (
            isinstance(owner, ast.Name) and owner.id == "os" and func.attr == "getenv"
        )
    else:
        reader = False
    if reader and call.args and isinstance(call.args[0], ast.Constant) and isinstance(call.args[0].value, str):
        return call.args[0].value
    return None


def _subscript_read(node: ast.Subscript) -> str | None:
    """Return X for os.environ["X"] read (not written)."""
    owner = node.value
    if isinstance(owner, ast.Attribute) and owner.attr == "environ" and isinstance(node.ctx, ast.Load):
        key = node.slice
        if isinstance(key, ast.Constant) and isinstance(key.value, str):
            return key.value
    return None


def variables_read() -> dict[str, str]:
    """Every environment variable read by name in the app packages, with the first file that reads it."""
    found: dict[str, str] = {}
    for package in APP_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts or path.name == "env.py":
                continue
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                name = None
                if isinstance(node, ast.Call):
                    name = _name_read(node)
                elif isinstance(node, ast.Subscript):
                    name = _subscript_read(node)
                if name and name.isupper():
                    found.setdefault(name, str(path.relative_to(ROOT)))
    return found


def variables_documented() -> list[str]:
    return TABLE_ROW.findall((ROOT / "docs" / "settings.md").read_text())


def test_every_variable_the_code_reads_is_in_the_settings_table():
    read = variables_read()
    missing = {name: where for name, where in read.items() if name not in set(variables_documented())}
    assert len(read) > 60, "the scan found too few variables: it no longer sees how settings.py reads them"
    assert missing == {}, f"add these to docs/settings.md: {missing}"


def test_the_settings_table_lists_no_variable_nobody_reads():
    stale = sorted(set(variables_documented()) - set(variables_read()))
    assert stale == [], f"docs/settings.md lists variables nothing reads: {stale}"


def test_the_settings_table_lists_each_variable_once():
    documented = variables_documented()
    assert sorted(name for name in set(documented) if documented.count(name) > 1) == []


def test_the_example_environment_names_only_documented_variables():
    example = (ROOT / ".env.example").read_text()
    named = re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", example, re.MULTILINE)
    assert named, ".env.example names no variable"
    assert sorted(set(named) - set(variables_documented())) == []
