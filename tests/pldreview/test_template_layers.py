"""Templates keep the apps' layers too: a lower app's template never names a higher app's URL or template.

The import graph (test_import_graph.py) cannot see ``{% url %}``, ``{% include %}`` or ``{% extends %}``; this
test reads them. A template belongs to the app named by its folder under templates/; the top-level templates
(base.html, the error pages) are the composition root's, like pldreview/urls.py, and may name any app.
A higher app shows something on a lower app's page through rules/panels.py.
"""
from __future__ import annotations

import re
from pathlib import Path

from django.urls import URLPattern, URLResolver, get_resolver

from tests.pldreview.test_import_graph import LAYERS

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
# allauth's templates are overridden by pldreview.accounts, which owns them here.
FOLDER_LAYER = {
    "pldreview": LAYERS["pldreview"],
    "account": LAYERS["pldreview.accounts"],
    "accounts": LAYERS["pldreview.accounts"],
    "allauth": LAYERS["pldreview.accounts"],
    "mfa": LAYERS["pldreview.accounts"],
    "usersessions": LAYERS["pldreview.accounts"],
    "rules": LAYERS["rules"],
    "evaluation": LAYERS["evaluation"],
}
URL_TAG = re.compile(r"{%\s*url\s+['\"]([\w:-]+)['\"]")
TEMPLATE_TAG = re.compile(r"{%\s*(?:include|extends)\s+['\"]([^'\"]+)['\"]")


def _view_layer(module: str) -> int | None:
    """The layer of the app that owns a view module; None for Django's and third parties' own views."""
    for app, layer in sorted(LAYERS.items(), key=lambda item: -len(item[0])):
        if module == app or module.startswith(app + "."):
            return layer
    return None


def url_layers() -> dict[str, int]:
    """Every named URL of our apps, with the layer of the app whose view serves it."""
    found: dict[str, int] = {}

    def walk(patterns: list, namespace: str = "") -> None:
        for entry in patterns:
            if isinstance(entry, URLResolver):
                inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
                walk(entry.url_patterns, inner)
            elif isinstance(entry, URLPattern) and entry.name:
                view = getattr(entry.callback, "view_class", entry.callback)
                layer = _view_layer(getattr(view, "__module__", ""))
                if layer is not None:
                    found.setdefault(namespace + entry.name, layer)

    walk(get_resolver().url_patterns)
    return found


def template_layer(name: str) -> int | None:
    """The layer of the app owning a template name like ``rules/ruleset.html``; None for the composition root."""
    folder = name.split("/", 1)[0] if "/" in name else None
    return FOLDER_LAYER.get(folder) if folder else None


def crossings() -> list[str]:
    """Every place a template names a URL or template of an app above its own."""
    urls = url_layers()
    found = []
    for path in sorted(TEMPLATES.rglob("*.html")):
        name = path.relative_to(TEMPLATES).as_posix()
        own = template_layer(name)
        if own is None:
            continue
        text = path.read_text(encoding="utf-8")
        for url_name in URL_TAG.findall(text):
            if urls.get(url_name, -1) > own:
                found.append(f"{name} names the URL {url_name!r}")
        for other in TEMPLATE_TAG.findall(text):
            layer = template_layer(other)
            if layer is not None and layer > own:
                found.append(f"{name} includes or extends {other!r}")
    return found


def test_the_scan_sees_the_urls_and_templates_of_every_app():
    layers = url_layers()
    assert {layer for layer in layers.values()} >= {LAYERS["pldreview"], LAYERS["rules"], LAYERS["evaluation"]}
    assert layers["pld-ruleset"] == LAYERS["rules"]
    assert layers["pld-production"] == LAYERS["evaluation"]
    assert template_layer("evaluation/production.html") == LAYERS["evaluation"]
    assert template_layer("base.html") is None


def test_a_lower_apps_template_never_names_a_higher_apps_url_or_template():
    assert crossings() == []


def test_a_crossing_is_found_when_a_rules_template_names_an_evaluation_url(tmp_path, monkeypatch):
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "crossing.html").write_text(
        "{% url 'pld-production' task.name %}{% include \"evaluation/trend_chart.html\" %}"
    )
    monkeypatch.setattr(f"{__name__}.TEMPLATES", tmp_path)
    assert crossings() == [
        "rules/crossing.html names the URL 'pld-production'",
        "rules/crossing.html includes or extends 'evaluation/trend_chart.html'",
    ]
