"""The layers drawn in CONTRIBUTING.md hold: no module imports from a layer above its own.

Every import counts, lazy ones inside functions included (hiding an upward import in a function
does not remove it); only imports under ``if TYPE_CHECKING:`` are left out.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "comet_agent"

#: Bottom to top, as CONTRIBUTING.md draws them: a first-level name under comet_agent -> its layer.
LAYERS: tuple[frozenset[str], ...] = (
    frozenset({"errors", "config", "paths", "records", "redaction", "catalogue", "warn_once", "signals"}),
    frozenset({"sources"}),
    frozenset({"collectors"}),
    frozenset({"delivery"}),
    frozenset({"api"}),
    frozenset({"engine"}),
    frozenset({"server"}),
    frozenset({"agent", "daemon", "embedded", "sdnotify"}),
    frozenset({"cli", "__main__", "__init__"}),  # the package's own __init__: the public surface
)

#: Upward imports tolerated for now: (importing module, imported first-level name). Keep it empty.
KNOWN_UPWARD: set[tuple[str, str]] = set()


def _layer_of(first_level: str) -> int:
    for index, names in enumerate(LAYERS):
        if first_level in names:
            return index
    raise AssertionError(f"comet_agent.{first_level} is in no layer: place it in CONTRIBUTING.md's drawing and here")


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package and len(parts) > 2:
        parts.pop()
    return ".".join(parts), is_package


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skipped.update(id(sub) for sub in ast.walk(node))
    return skipped


def _imported(node: ast.AST, module: str, is_package: bool) -> list[str]:
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - (node.level - 1)]
            prefix = ".".join(base + ([node.module] if node.module else []))
        else:
            prefix = node.module or ""
        if prefix == "comet_agent":  # from comet_agent import errors, __version__
            return [f"comet_agent.{alias.name}" for alias in node.names]
        return [prefix]
    return []


def _first_level(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def upward_imports() -> list[tuple[str, str, int]]:
    """``(importing module, imported module, line)`` for every import from a higher layer."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = _module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"))
        skipped = _type_checking_nodes(tree)
        own_layer = _layer_of(_first_level(module))
        for node in ast.walk(tree):
            if id(node) in skipped:
                continue
            for target in _imported(node, module, is_package):
                if not target.startswith("comet_agent."):
                    continue
                first = _first_level(target)
                if first == "__version__":
                    continue  # a constant of the package, not a layer
                if _layer_of(first) > own_layer and (module, first) not in KNOWN_UPWARD:
                    found.append((module, target, node.lineno))
    return found


def test_no_module_imports_from_a_layer_above_its_own():
    assert upward_imports() == [], "see 'Layers' in CONTRIBUTING.md: move the code up, or the import down"


def test_every_first_level_module_has_a_layer():
    for path in PACKAGE.iterdir():
        if path.suffix == ".py" or (path.is_dir() and (path / "__init__.py").exists()):
            _layer_of(path.stem if path.suffix == ".py" else path.name)
