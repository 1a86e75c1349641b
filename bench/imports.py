"""The import graph between vethlab's packages: package -> the packages it imports.

    .venv/bin/python bench/imports.py            # the graph, one line per package
    .venv/bin/python bench/imports.py --check    # exit 1 if a layering rule is broken

Read from the source with `ast` (nothing is imported), every import counted, those
inside functions and under TYPE_CHECKING included: a lazy import is still a
dependency.  A top-level module (lab.py, errors.py, ownership.py) is its own
"package".  The rules checked are the architecture's: the kernel imports only the
basics (errors, ownership, which reads names through topology.naming); the pure
core (topology, model) never imports the kernel's side effects — only its
vocabulary, `kernel.api` (value types such as Route and the protocols, no code that
touches the kernel), shown as its own node; nothing below the fronts imports the
fronts or lab.py.  model's one import of state is graph.from_state's type.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "vethlab"

#: package -> packages it must not import
FORBIDDEN = {
    # the vocabulary names kernel/nodefs.View only for type checking (a value type that lives with its code)
    "kernel.api": {"topology", "model", "reconcile", "drivers", "ops", "state", "cli", "testing", "lab"},
    "kernel": {"topology", "model", "reconcile", "drivers", "ops", "state", "cli", "testing", "lab"},
    "model": {"kernel", "reconcile", "drivers", "ops", "cli", "testing", "lab"},
    "topology": {"kernel", "model", "reconcile", "drivers", "ops", "state", "cli", "testing", "lab"},
    "ownership": {"kernel", "model", "reconcile", "drivers", "ops", "state", "cli", "testing", "lab"},  # naming only
    "errors": {"kernel", "model", "reconcile", "drivers", "ops", "state", "cli", "testing", "lab", "topology"},
    "state": {"kernel", "reconcile", "drivers", "ops", "cli", "testing", "lab"},
    "reconcile": {"ops", "cli", "testing", "lab"},
    "drivers": {"ops", "cli", "testing", "lab"},  # drivers share reconcile's plan types
    "ops": {"cli", "testing", "lab"},
}


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _node(parts: list[str] | tuple[str, ...]) -> str:
    """The graph node of an import target: its package, or `kernel.api` for the
    kernel's vocabulary."""
    return "kernel.api" if list(parts[:2]) == ["kernel", "api"] else parts[0]


def _is_module(name: str) -> bool:
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def imported(path: Path) -> set[str]:
    """The vethlab packages one module imports."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = path.relative_to(ROOT).parts[:-1]  # the module's package path inside vethlab
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "vethlab" and len(parts) > 1:
                    out.add(_node(parts[1:]))
                elif parts[0] == "vethlab":
                    out.update(alias.name if _is_module(alias.name) else "vethlab" for alias in node.names)
                continue
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                out.add(_node(target))
            else:  # `from . import x` at the top of vethlab: a module, or the package's public API
                out.update(alias.name if _is_module(alias.name) else "vethlab" for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "vethlab" and len(parts) > 1:
                    out.add(_node(parts[1:]))
    return out


def graph() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {}
    for path in sorted(ROOT.rglob("*.py")):
        pkg = package_of(path)
        if pkg in ("__init__", "__main__"):
            continue
        if path.relative_to(ROOT).parts[:2] == ("kernel", "api.py"):
            pkg = "kernel.api"
        edges.setdefault(pkg, set()).update(imported(path) - {pkg, "__init__", "__main__"})
    return edges


def main(argv: list[str]) -> int:
    edges = graph()
    width = max(map(len, edges))
    for pkg in sorted(edges):
        print(f"{pkg:<{width}} -> {', '.join(sorted(edges[pkg])) or '(nothing of vethlab)'}")
    broken = [(pkg, bad) for pkg, banned in FORBIDDEN.items() for bad in sorted(edges.get(pkg, set()) & banned)]
    for pkg, bad in broken:
        print(f"layering broken: {pkg} imports {bad}", file=sys.stderr)
    return 1 if broken and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
