"""The project's import graph: no circles, and imports go one way, pldreview <- rules <- evaluation.

The graph is read from the source with ``ast``, so it counts every import statement: at module level,
inside functions (where a circle usually hides) and under ``TYPE_CHECKING``. docs/architecture.md
explains the layers and the exceptions.
"""
from __future__ import annotations

import ast
from pathlib import Path

from django.conf import settings

APPS = ("pldreview", "rules", "evaluation")
# Lower layers never import higher ones. pldreview.accounts is an app inside the project package: it may use
# pldreview's ledger and signatures, pldreview's core may not use it.
LAYERS = {"pldreview": 0, "pldreview.accounts": 1, "rules": 2, "evaluation": 3}
# The composition root wires the apps together and may name any of them.
COMPOSITION_ROOT = {"pldreview.settings", "pldreview.urls"}

Graph = dict[str, dict[str, int]]  # module -> {imported module: first line}


def _modules(root: Path, apps: tuple[str, ...]) -> dict[str, Path]:
    modules = {}
    for app in apps:
        for path in sorted((root / app).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    """Return the dotted names an import statement may load, most specific first."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - node.level + 1]
        base = ".".join([*package, base] if base else package)
    # ``from evaluation.student import prompts`` loads the module evaluation.student.prompts;
    # ``from rules.models import Task`` loads rules.models.
    return [f"{base}.{alias.name}" for alias in node.names] + [base]


def import_graph(root: Path, apps: tuple[str, ...] = APPS) -> Graph:
    """Return which of the apps' modules each of their modules imports, with the line of the first import."""
    modules = _modules(root, apps)
    graph: Graph = {module: {} for module in modules}
    for module, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
            names = _imported(node, module, is_package)
            targets = {name for name in names if name in modules}
            if isinstance(node, ast.ImportFrom):
                # A submodule imported by name stands for its package; otherwise the import is of the package.
                targets = {name for name in names[:-1] if name in modules} or targets
            for target in targets - {module}:
                graph[module].setdefault(target, node.lineno)
    return graph


def find_circle(graph: Graph) -> list[str]:
    """Return one import circle as a list of modules (first repeated at the end), or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(module: str) -> list[str]:
        state[module] = 1
        path.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state and (circle := visit(target)):
                return circle
        path.pop()
        state[module] = 2
        return []

    for module in sorted(graph):
        if module not in state and (circle := visit(module)):
            return circle
    return []


def _layer(module: str) -> int:
    owner = max((prefix for prefix in LAYERS if module == prefix or module.startswith(prefix + ".")), key=len)
    return LAYERS[owner]


def layering_offences(graph: Graph) -> list[str]:
    """Return each import from a lower layer into a higher one, outside the composition root."""
    return [
        f"{module}:{line} imports {target}"
        for module, targets in sorted(graph.items())
        for target, line in sorted(targets.items())
        if module not in COMPOSITION_ROOT and _layer(target) > _layer(module)
    ]


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_project_has_no_import_circle() -> None:
    graph = import_graph(Path(settings.BASE_DIR))
    assert "evaluation.runs.services" in graph and "rules.review.services" in graph["rules.views.review"]
    circle = find_circle(graph)
    assert circle == [], "import circle: " + " -> ".join(circle)


def test_imports_go_from_evaluation_to_rules_to_pldreview_never_back() -> None:
    assert layering_offences(import_graph(Path(settings.BASE_DIR))) == []


def test_it_names_a_circle_hidden_in_a_function_and_a_relative_import(tmp_path) -> None:
    _write(tmp_path, {
        "evaluation/__init__.py": "",
        "evaluation/runs/services.py": "from evaluation.student.warm import restore\n",
        "evaluation/student/warm.py": "def preload():\n    from ..release import promotion\n",
        "evaluation/release/promotion.py": "def start():\n    from evaluation.runs import services\n",
        "evaluation/runs/metrics.py": "import evaluation.runs.services\n",
    })
    graph = import_graph(tmp_path, apps=("evaluation",))
    assert find_circle(graph) == [
        "evaluation.release.promotion", "evaluation.runs.services",
        "evaluation.student.warm", "evaluation.release.promotion",
    ]
    del graph["evaluation.release.promotion"]["evaluation.runs.services"]
    assert find_circle(graph) == []


def test_it_names_an_import_against_the_layers_and_lets_the_composition_root_through(tmp_path) -> None:
    _write(tmp_path, {
        "pldreview/__init__.py": "",
        "pldreview/urls.py": "from rules.views import home\n",
        "pldreview/views.py": "def home():\n    from rules.models import Task\n",
        "pldreview/accounts/__init__.py": "",
        "pldreview/accounts/views.py": "from pldreview.views import home\n",
        "rules/__init__.py": "",
        "rules/models.py": "from pldreview.accounts.views import home\n",
        "rules/views.py": "from evaluation.runs.services import run\n",
        "evaluation/__init__.py": "",
        "evaluation/runs/services.py": "from rules.models import Task\n",
    })
    assert layering_offences(import_graph(tmp_path)) == [
        "pldreview.views:2 imports rules.models",
        "rules.views:1 imports evaluation.runs.services",
    ]
