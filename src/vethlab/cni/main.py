"""`vethlab-cni`: the entry point a runtime executes.

Reads CNI_* and the config, runs the command, prints one JSON document on
stdout (a result, a version report, or an error object) and nothing else there.
Every failure becomes a CNI error object with exit status 1 — the spec's codes
for protocol problems, 100+ for vethlab's own — never a traceback; details of an
unexpected failure go to stderr (the runtime's log) and, with
VETHLAB_CNI_LOG=FILE, to that file.

Start-up is most of an ADD's cost, so this module imports only the protocol;
each command imports what it needs when it runs."""

from __future__ import annotations

import os
import sys

from .jsonio import dumps, loads
from .protocol import INTERNAL, LATEST, SUPPORTED, TRY_AGAIN_LATER, CniError, check_version, decode, read_env

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any


def run(stdin: bytes, environ: dict[str, str] | None = None) -> dict[str, Any] | None:
    """One invocation: the JSON to print (None: print nothing)."""
    env = read_env(environ)
    if env.command == "VERSION":
        raw = decode(stdin) if stdin.strip() else {}
        version = raw.get("cniVersion") or LATEST
        return {"cniVersion": version, "supportedVersions": list(SUPPORTED)}
    raw = decode(stdin)
    check_version(raw.get("cniVersion"), env.command)
    from .config import NetConf

    conf = NetConf(raw)
    if conf.lab is not None:
        from . import labjoin as mode
    else:
        from . import commands as mode  # type: ignore[no-redef]  # the same verbs
    if env.command == "ADD":
        result: dict[str, Any] = mode.add(conf, env)
        return result
    if env.command == "DEL":
        mode.delete(conf, env)
    elif env.command == "CHECK":
        mode.check(conf, env)
    elif env.command == "GC":
        mode.gc(conf, env)
    elif env.command == "STATUS":
        mode.status(conf, env)
    return None


def _read_stdin() -> bytes:
    """The config (VERSION may come without one, from a terminal)."""
    from .protocol import IO_FAILURE

    try:
        if os.environ.get("CNI_COMMAND") == "VERSION" and sys.stdin.isatty():
            return b""
        return sys.stdin.buffer.read((1 << 20) + 1)  # decode() refuses more than 1 MiB
    except (OSError, ValueError, AttributeError) as exc:
        raise CniError(IO_FAILURE, f"cannot read the network config from stdin: {exc}") from None


def _version_of(stdin: bytes) -> str:
    try:
        value = loads(stdin).get("cniVersion")
    except Exception:
        return LATEST
    return value if isinstance(value, str) and value in SUPPORTED else LATEST


def _log(text: str) -> None:
    print(f"vethlab-cni: {text}", file=sys.stderr)
    path = os.environ.get("VETHLAB_CNI_LOG")
    if path:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(text + "\n")
        except OSError:
            pass


def main() -> int:
    if len(sys.argv) > 1:
        from .install import cli

        return cli(sys.argv[1:])
    stdin = b""
    try:
        stdin = _read_stdin()
        out = run(stdin)
        if out is not None:
            sys.stdout.write(dumps(out))
            sys.stdout.flush()
        return 0
    except CniError as exc:
        error = exc
    except KeyboardInterrupt:
        error = CniError(TRY_AGAIN_LATER, "interrupted")
    except Exception as exc:  # the contract: an error object, never a traceback on stdout
        error = _translate(exc)
        if error.code == INTERNAL:
            import traceback

            _log(traceback.format_exc())
    if error.code != INTERNAL:
        _log(f"{os.environ.get('CNI_COMMAND', '?')} failed: code {error.code}: {error.details}")
    sys.stdout.write(dumps(error.to_json(_version_of(stdin))))
    sys.stdout.flush()
    return 1


def _translate(exc: Exception) -> CniError:
    """vethlab's own errors to codes 100+ (a lock timeout is 11: the runtime retries)."""
    from ..errors import ConflictError, KernelError, LockTimeout, StateError, VethlabError
    from .protocol import CONFLICT, KERNEL_FAILURE, STATE_FAILURE

    if isinstance(exc, LockTimeout):
        return CniError(TRY_AGAIN_LATER, str(exc))
    if isinstance(exc, ConflictError):
        return CniError(CONFLICT, str(exc))
    if isinstance(exc, StateError):
        return CniError(STATE_FAILURE, str(exc))
    if isinstance(exc, (KernelError, VethlabError, OSError)):
        return CniError(KERNEL_FAILURE, str(exc))
    return CniError(INTERNAL, f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    sys.exit(main())
