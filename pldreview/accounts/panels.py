"""Sections other apps add to an account's page (the tasks a person sees), so accounts never imports them.

An app registers ``panel(target)`` in its ``AppConfig.ready()``; it returns ``(template_name, context)`` or None,
and the user page includes the template with the context as ``panel``.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

UserPanel = Callable[[Any], "tuple[str, dict[str, Any]] | None"]

_user_panels: list[UserPanel] = []


def register_user_panel(panel: UserPanel) -> UserPanel:
    """Add a section to the user page's facts; registering it again changes nothing."""
    if panel not in _user_panels:
        _user_panels.append(panel)
    return panel


def user_panels(target: Any) -> list[dict[str, Any]]:
    """Return the registered sections that have something to say about the account, in order."""
    shown = []
    for panel in _user_panels:
        result = panel(target)
        if result is not None:
            shown.append({"template_name": result[0], "context": result[1]})
    return shown
