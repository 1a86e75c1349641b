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

Besides packages, the boundary inside: drivers, reconcile, model, ops and lab.py
reach the kernel only through its protocols (kernel.api) and its one factory
(`kernel.open_kernel`); an import of any other kernel module from there (an
implementation: rtnl, process, nodefiles, ...) is a reach-past, listed and, with
--check, an error.  The fronts (cli, the CNI plugin, testing) may go further.

Some third-party modules are confined to the modules that need them (CONFINED):
PyYAML only in topology/yamlevents.py, so that a first read of a plain topology
file (topology/quickyaml.py) and every command that reads none never load it.
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


#: the layers that reach the kernel through its boundary only: no kernel module but these
ABOVE_KERNEL = {"drivers", "reconcile", "model", "ops", "lab"}
BOUNDARY = {"kernel.api", "kernel"}


def package_of(path: Path) -> str:
    rel = path.relative_to(ROOT)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _node(parts: list[str] | tuple[str, ...]) -> str:
    """The graph node of an import target: its package, or `kernel.api` for the
    kernel's vocabulary."""
    return "kernel.api" if list(parts[:2]) == ["kernel", "api"] else parts[0]


def _is_module(name: str) -> bool:
    return (ROOT / name).is_dir() or (ROOT / f"{name}.py").is_file()


def _targets(path: Path) -> list[tuple[list[str], list[str]]]:
    """Every vethlab import of one module: (the target's parts inside vethlab, the
    names imported from it); `import vethlab.x.y` gives (["x", "y"], [])."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    here = path.relative_to(ROOT).parts[:-1]  # the module's package path inside vethlab
    out: list[tuple[list[str], list[str]]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            names = [alias.name for alias in node.names]
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] == "vethlab":
                    out.append((parts[1:], names))
                continue
            base = here[:len(here) - (node.level - 1)] if node.level > 1 else here
            out.append(([*base, *(node.module.split(".") if node.module else [])], names))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "vethlab" and len(parts) > 1:
                    out.append((parts[1:], []))
    return out


def imported(path: Path) -> set[str]:
    """The vethlab packages one module imports."""
    out: set[str] = set()
    for target, names in _targets(path):
        if target:
            out.add(_node(target))
        else:  # `from vethlab import x` / `from . import x` at the top of vethlab: a module, or the public API
            out.update(name if _is_module(name) else "vethlab" for name in names)
    return out


def kernel_modules(path: Path) -> set[str]:
    """The modules of the kernel package one module imports: `kernel.rtnl` for
    `from ..kernel.rtnl import X` and for `from ..kernel import rtnl`; `kernel` for
    the package's own API (`from ..kernel import open_kernel`)."""
    out: set[str] = set()
    for target, names in _targets(path):
        if target[:1] != ["kernel"]:
            continue
        if len(target) > 1:
            out.add(f"kernel.{target[1]}")
        else:
            out.update(f"kernel.{n}" if (ROOT / "kernel" / f"{n}.py").is_file() else "kernel" for n in names or [""])
    return out


def reach_pasts() -> list[tuple[str, str]]:
    """(module, kernel module) for every import, from the layers above the kernel, of
    a kernel module other than the protocols (kernel.api) and the one factory
    (kernel's open_kernel): those go past the boundary to an implementation."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        if package_of(path) not in ABOVE_KERNEL:
            continue
        for module in sorted(kernel_modules(path) - BOUNDARY):
            out.append((str(path.relative_to(ROOT)), module))
    return out


#: third-party modules -> the only vethlab modules that may import them (anywhere in the
#: module, lazily or not): PyYAML costs ~10 ms to import, and a first read of a plain
#: file needs none of it (topology/quickyaml.py), so only the libyaml path loads it
CONFINED = {"yaml": {"topology/yamlevents.py"}}


def confined_imports() -> list[tuple[str, str]]:
    """(module, third-party module) for every import of a CONFINED module from outside
    the modules allowed to import it."""
    out = []
    for path in sorted(ROOT.rglob("*.py")):
        rel = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            names = [alias.name for alias in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
            for name in names:
                top = name.split(".")[0]
                if top in CONFINED and rel not in CONFINED[top]:
                    out.append((rel, top))
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
    past = reach_pasts()
    print(f"past the kernel boundary (from {', '.join(sorted(ABOVE_KERNEL))}; allowed: kernel.api, "
          f"kernel.open_kernel): {len(past)}")
    for module, target in past:
        print(f"reach-past: {module} imports {target}", file=sys.stderr)
    confined = confined_imports()
    print(f"confined third-party imports ({', '.join(f'{k}: {sorted(v)}' for k, v in CONFINED.items())}) "
          f"broken: {len(confined)}")
    for module, target in confined:
        print(f"confined: {module} imports {target}", file=sys.stderr)
    return 1 if (broken or past or confined) and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
