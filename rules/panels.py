"""Panels and queue figures other apps add to the review pages, so rules shows them without importing those apps.

An app registers them in its ``AppConfig.ready()``. A rule panel is ``panel(rule, user)`` returning
``(template_name, context)`` or None (nothing to show this user); the rule page includes each template
with the context as ``panel``. A queue figure is ``figures(rules)`` returning a context per rule id,
computed for a whole page at once so the queue's query count does not grow with its length; each cell
includes the figure's template with that context as ``figure``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rules.models import PromptVersion, Rule, Task

RulePanel = Callable[[Rule, Any], "tuple[str, dict[str, Any]] | None"]
QueueFigures = Callable[[list[Rule]], "dict[int, dict[str, Any]]"]
TaskPanel = Callable[[Task, Any], "tuple[str, dict[str, Any]] | None"]
TaskLinks = Callable[[Task, Any], "list[tuple[str, str]]"]
PromptVersionPanel = Callable[[PromptVersion, Any], "tuple[str, dict[str, Any]] | None"]
# A banner is ``banner(tasks)`` (None: every task) returning (template_name, context) per thing to shout about.
TaskBanner = Callable[["list[Task] | None"], "list[tuple[str, dict[str, Any]]]"]


@dataclass(frozen=True)
class Shown:
    """One registered panel or figure, ready for ``{% include template_name with panel=context %}``."""

    template_name: str
    context: dict[str, Any]


@dataclass(frozen=True)
class _QueueFigure:
    title: str
    figures: QueueFigures
    template_name: str


_rule_panels: list[RulePanel] = []
_queue_figures: list[_QueueFigure] = []
_task_panels: list[TaskPanel] = []
_task_links: list[TaskLinks] = []
_prompt_version_panels: dict[str, list[PromptVersionPanel]] = {"actions": [], "record": []}
_task_banners: list[TaskBanner] = []


def register_task_banner(banner: TaskBanner) -> TaskBanner:
    """Add a banner to the task pages and the overview (a stopped task's red banner); registering it again changes
    nothing."""
    if banner not in _task_banners:
        _task_banners.append(banner)
    return banner


def task_banners(tasks: list[Task] | None = None) -> list[Shown]:
    """Return the registered banners for the tasks (None: every task, as the overview shows them), in order."""
    return [Shown(template_name=name, context=context) for banner in _task_banners for name, context in banner(tasks)]


def register_task_panel(panel: TaskPanel) -> TaskPanel:
    """Add a panel to the task page (``panel(task, user)``, like a rule panel); registering it again changes nothing."""
    if panel not in _task_panels:
        _task_panels.append(panel)
    return panel


def task_panels(task: Task, user: Any) -> list[Shown]:
    """Return the registered task panels that have something to show this user, in order."""
    return _shown(_task_panels, task, user)


def register_task_links(links: TaskLinks) -> TaskLinks:
    """Add links to the task page's row of links: ``links(task, user)`` returns the ``(url, text)`` this user may
    follow; registering it again changes nothing."""
    if links not in _task_links:
        _task_links.append(links)
    return links


def task_links(task: Task, user: Any) -> list[tuple[str, str]]:
    """Return the registered task links this user may follow, in order."""
    return [shown for links in _task_links for shown in links(task, user)]


def register_rule_panel(panel: RulePanel) -> RulePanel:
    """Add a panel to the rule page, after those registered before; registering it again changes nothing."""
    if panel not in _rule_panels:
        _rule_panels.append(panel)
    return panel


def register_queue_figure(title: str, figures: QueueFigures, *, template_name: str) -> None:
    """Add a column to the review queue; registering the same title again replaces it."""
    _queue_figures[:] = [figure for figure in _queue_figures if figure.title != title]
    _queue_figures.append(_QueueFigure(title=title, figures=figures, template_name=template_name))


def rule_panels(rule: Rule, user: Any) -> list[Shown]:
    """Return the registered panels that have something to show this user about the rule, in order."""
    return _shown(_rule_panels, rule, user)


def register_prompt_version_panel(panel: PromptVersionPanel, *, place: str) -> PromptVersionPanel:
    """Add a panel to the prompt version page at ``place``: "actions" (the buttons under the facts) or "record"
    (sections after the prompt text); registering it again changes nothing."""
    if place not in _prompt_version_panels:
        raise ValueError(f"a prompt version panel goes in one of {sorted(_prompt_version_panels)}, not {place!r}")
    if panel not in _prompt_version_panels[place]:
        _prompt_version_panels[place].append(panel)
    return panel


def prompt_version_panels(version: PromptVersion, user: Any) -> dict[str, list[Shown]]:
    """Return, per place, the registered prompt version panels that have something to show this user."""
    return {place: _shown(panels, version, user) for place, panels in _prompt_version_panels.items()}


def _shown(panels: list[Callable[[Any, Any], Any]], obj: Any, user: Any) -> list[Shown]:
    shown = []
    for panel in panels:
        result = panel(obj, user)
        if result is not None:
            shown.append(Shown(template_name=result[0], context=result[1]))
    return shown


def queue_figures(rules: list[Rule]) -> list[str]:
    """Attach each registered figure to the rules as ``rule.queue_figures``; return the column titles."""
    computed = [(figure, figure.figures(rules)) for figure in _queue_figures]
    for rule in rules:
        rule.queue_figures = [  # type: ignore[attr-defined]
            Shown(template_name=figure.template_name, context=values.get(rule.pk, {})) for figure, values in computed
        ]
    return [figure.title for figure, _ in computed]
