"""`vethlab-cni install DIR`: put the plugin into a CNI plugin directory under its
type name (DIR/vethlab), as a launcher that starts fast.

Runtimes find a plugin by its `type` in their plugin directories, so it must be
there as `vethlab` anyway.  The launcher is the console script minus its
start-up costs: the interpreter runs with `-I -S` (no site module, no .pth files:
~5-30 ms less per run, measured in bench/cni.py) and vethlab's own directory and
its dependencies' are put on sys.path explicitly, as the console script would
have found them.  Written atomically, mode 0755."""

from __future__ import annotations

import os
import sys

TEMPLATE = """#!{python} -IS
# vethlab CNI plugin (type "vethlab"), written by `vethlab-cni install`; see docs/cni.md.
# -I -S: no site module, no .pth files (start-up cost); vethlab's paths are set here instead.
import sys
sys.path[:0] = {paths!r}
from vethlab.cni.main import main
sys.exit(main())
"""


def launcher() -> str:
    import sysconfig

    import vethlab

    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(vethlab.__file__)))
    paths = [package_parent]
    purelib = sysconfig.get_paths()["purelib"]
    if purelib != package_parent:
        paths.append(purelib)
    return TEMPLATE.format(python=sys.executable, paths=paths)


def install(directory: str, name: str = "vethlab") -> str:
    os.makedirs(directory, mode=0o755, exist_ok=True)
    target = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o755)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(launcher())
    os.chmod(tmp, 0o755)
    os.replace(tmp, target)
    return target


def cli(argv: list[str]) -> int:
    """`install DIR [NAME]` (the only use of arguments: runtimes pass none)."""
    if len(argv) in (2, 3) and argv[0] == "install":
        try:
            print(install(argv[1], *argv[2:]))
        except OSError as exc:
            print(f"vethlab-cni: cannot install into {argv[1]}: {exc.strerror}", file=sys.stderr)
            return 1
        return 0
    print("usage: vethlab-cni install DIR [NAME]   (write DIR/NAME, default DIR/vethlab: the plugin, for a "
          "runtime's CNI plugin directory)\n       a runtime runs vethlab-cni without arguments, CNI_* in its "
          "environment and the network config on stdin", file=sys.stderr)
    return 2
