"""IPAM: delegated to the plugin the config names (`ipam.type`, found in CNI_PATH),
as the reference bridge plugin does, or to vethlab's own host-local-compatible
allocator (hostlocal.py) when that plugin is `host-local` and is not installed,
or when VETHLAB_CNI_IPAM=own.

The delegate is started with posix_spawn and pipes, not subprocess (whose import
costs a few ms of every ADD): same environment, the network config on stdin, its
result or CNI error read from stdout.  A delegate that predates the config's
version (the reference host-local speaks up to 1.0.0) is asked again in 1.0.0."""

from __future__ import annotations

import os

from .jsonio import dumps, loads
from .protocol import INCOMPATIBLE_VERSION, INVALID_CONFIG, NO_ADDRESS, CniError, Env, version_key
from .result import Result

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

OWN = "vethlab"  # what a record says when our own allocator holds the lease


def find(plugin: str, path: list[str]) -> str | None:
    if not plugin or "/" in plugin or plugin in (".", ".."):
        raise CniError(INVALID_CONFIG, f"ipam.type: {plugin!r} is not a plugin name")
    for directory in path:
        candidate = os.path.join(directory, plugin)
        if os.access(candidate, os.X_OK) and os.path.isfile(candidate):
            return candidate
    return None


def which(ipam: dict[str, Any], env: Env) -> str | None:
    """The delegate's path, or None for vethlab's own allocator; code 7 when neither fits."""
    kind = ipam.get("type", "")
    if os.environ.get("VETHLAB_CNI_IPAM") == "own" and kind == "host-local":
        return None
    found = find(kind, env.path)
    if found is None and kind != "host-local":
        raise CniError(INVALID_CONFIG, f"ipam.type: plugin {kind!r} not found in CNI_PATH ({':'.join(env.path)})")
    return found


def _variables(command: str, env: Env, container_id: str | None, ifname: str | None) -> dict[str, str]:
    variables = dict(env.environ or os.environ)  # the runtime's environment, as the reference passes it on
    variables["CNI_COMMAND"] = command
    if container_id is not None:
        variables["CNI_CONTAINERID"] = container_id
    if ifname is not None:
        variables["CNI_IFNAME"] = ifname
    return variables


def run(plugin: str, command: str, conf: dict[str, Any], env: Env, container_id: str | None = None,
        ifname: str | None = None) -> dict[str, Any] | None:
    """Run a delegate; its JSON answer (None when it printed nothing).  Its CNI error
    is re-raised with the delegate named."""
    variables = _variables(command, env, container_id, ifname)
    status, out = _spawn(plugin, dumps(conf).encode(), variables)
    return _answer(plugin, command, status, out)


def _answer(plugin: str, command: str, status: int, out: bytes) -> dict[str, Any] | None:
    text = out.strip()
    data: Any = None
    if text:
        try:
            data = loads(text)
        except ValueError:
            raise CniError(NO_ADDRESS, f"IPAM plugin {plugin} {command}: answered {text[:200]!r}, not JSON") from None
    if status != 0:
        if isinstance(data, dict) and isinstance(data.get("code"), int):
            raise CniError(int(data["code"]),
                           f"IPAM plugin {os.path.basename(plugin)}: {data.get('msg', '')}"
                           + (f": {data['details']}" if data.get("details") else ""))
        raise CniError(NO_ADDRESS, f"IPAM plugin {plugin} {command} failed with status {status}")
    return data if isinstance(data, dict) else None


def _spawn(path: str, stdin: bytes, variables: dict[str, str]) -> tuple[int, bytes]:
    return _finish(*_start(path, stdin, variables))


def _start(path: str, stdin: bytes, variables: dict[str, str]) -> tuple[int, int]:
    """The delegate started, its config written: (pid, read end of its stdout)."""
    r_in, w_in = os.pipe()
    r_out, w_out = os.pipe()
    try:
        pid = os.posix_spawn(path, [path], variables, file_actions=[
            (os.POSIX_SPAWN_DUP2, r_in, 0), (os.POSIX_SPAWN_DUP2, w_out, 1),
            (os.POSIX_SPAWN_CLOSE, w_in), (os.POSIX_SPAWN_CLOSE, r_out)])
    except OSError as exc:
        for fd in (r_in, w_in, r_out, w_out):
            os.close(fd)
        raise CniError(NO_ADDRESS, f"cannot run IPAM plugin {path}: {exc.strerror}") from None
    os.close(r_in)
    os.close(w_out)
    try:
        os.write(w_in, stdin)  # a config is far below the pipe's 64 KiB: never blocks
    except BrokenPipeError:
        pass
    finally:
        os.close(w_in)
    return pid, r_out


def _finish(pid: int, r_out: int) -> tuple[int, bytes]:
    """Its whole answer and exit status."""
    chunks = []
    try:
        while True:
            chunk = os.read(r_out, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r_out)
        _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), b"".join(chunks)


def _delegate_conf(conf: dict[str, Any], version: str) -> dict[str, Any]:
    out = dict(conf)
    out["cniVersion"] = version
    return out


def delegate(plugin: str, command: str, conf: dict[str, Any], env: Env, container_id: str | None = None,
             ifname: str | None = None) -> dict[str, Any] | None:
    """`run`, retried in 1.0.0 when a delegate refuses a 1.1.0 config as too new."""
    try:
        return run(plugin, command, conf, env, container_id, ifname)
    except CniError as exc:
        if exc.code != INCOMPATIBLE_VERSION or version_key(str(conf.get("cniVersion"))) <= (1, 0, 0):
            raise
    older = _delegate_conf(conf, "1.0.0")
    older.pop("prevResult", None)
    return run(plugin, command, older, env, container_id, ifname)


def speaks(plugin: str, version: str, env: Env) -> bool:
    """Does the delegate support spec `version` (its VERSION answer)?  STATUS and GC
    exist from 1.1.0 on: a delegate that predates it (the reference host-local up
    to plugins 1.4) is not asked for them."""
    conf = {"cniVersion": version}
    try:
        answer = run(plugin, "VERSION", conf, env)
    except CniError:
        return False
    supported = answer.get("supportedVersions") if answer else None
    return isinstance(supported, list) and version in supported


class Pending:
    """An ADD's lease, being obtained while the caller builds the interfaces.

    The delegate is a separate process (the reference host-local: a Go binary, a few
    ms): ADD starts it first, makes the bridge and the veth pair meanwhile, and asks
    for the result only when it needs the address, so the two overlap on a
    multi-core machine.  `holder` says who holds the lease once `result()` ran."""

    def __init__(self, conf: dict[str, Any], env: Env, wait: float) -> None:
        self.conf, self.env, self.wait = conf, env, wait
        self.plugin = which(conf.get("ipam") or {}, env)
        self.holder = self.plugin or OWN
        self.done: tuple[Result, str] | None = None
        self.child: tuple[int, int] | None = None
        if self.plugin is not None:
            self.child = _start(self.plugin, dumps(conf).encode(), _variables("ADD", env, None, None))

    def result(self) -> tuple[Result, str]:
        if self.done is not None:
            return self.done
        if self.plugin is None:
            from . import hostlocal

            ipam = self.conf.get("ipam") or {}
            self.done = hostlocal.add(ipam, self.conf["name"], self.env.container_id, self.env.ifname,
                                      self.env.args, self.wait), OWN
            return self.done
        assert self.child is not None
        child, self.child = self.child, None
        try:
            data = _answer(self.plugin, "ADD", *_finish(*child))
        except CniError as exc:
            if exc.code != INCOMPATIBLE_VERSION or version_key(str(self.conf.get("cniVersion"))) <= (1, 0, 0):
                raise
            older = _delegate_conf(self.conf, "1.0.0")
            data = run(self.plugin, "ADD", older, self.env)
        result = Result.from_json(data, f"the result of IPAM plugin {self.plugin}")
        if not result.ips:
            raise CniError(NO_ADDRESS, f"IPAM plugin {self.plugin} returned no address")
        self.done = result, self.plugin
        return self.done

    def abandon(self) -> None:
        """A failed ADD: reap the delegate if it still runs (its lease, if it took one,
        is released by the caller's undo)."""
        if self.child is not None:
            child, self.child = self.child, None
            try:
                _finish(*child)
            except OSError:
                pass


def add(conf: dict[str, Any], env: Env, wait: float) -> tuple[Result, str]:
    """(the IPAM result, who holds the lease: a delegate's path or OWN)."""
    return Pending(conf, env, wait).result()


def delete(conf: dict[str, Any], env: Env, holder: str | None, container_id: str, ifname: str, wait: float) -> None:
    """Release the attachment's lease wherever it is held; a missing delegate is
    not an error for DEL (nothing of ours can be held there)."""
    ipam = conf.get("ipam") or {}
    if not ipam:
        return
    if holder == OWN or holder is None:
        from . import hostlocal

        hostlocal.delete(ipam, conf["name"], container_id, ifname, wait)
        if holder == OWN:
            return
    try:
        plugin = holder if holder and os.access(holder, os.X_OK) else which(ipam, env)
    except CniError:
        return
    if plugin is not None:
        delegate(plugin, "DEL", conf, env, container_id, ifname)
