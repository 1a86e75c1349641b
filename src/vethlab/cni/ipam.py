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


def run(plugin: str, command: str, conf: dict[str, Any], env: Env, container_id: str | None = None,
        ifname: str | None = None) -> dict[str, Any] | None:
    """Run a delegate; its JSON answer (None when it printed nothing).  Its CNI error
    is re-raised with the delegate named."""
    variables = dict(os.environ)
    variables["CNI_COMMAND"] = command
    if container_id is not None:
        variables["CNI_CONTAINERID"] = container_id
    if ifname is not None:
        variables["CNI_IFNAME"] = ifname
    status, out = _spawn(plugin, dumps(conf).encode(), variables)
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
    chunks = []
    while True:
        chunk = os.read(r_out, 65536)
        if not chunk:
            break
        chunks.append(chunk)
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


def add(conf: dict[str, Any], env: Env, wait: float) -> tuple[Result, str]:
    """(the IPAM result, who holds the lease: a delegate's path or OWN)."""
    ipam = conf.get("ipam") or {}
    plugin = which(ipam, env)
    if plugin is None:
        from . import hostlocal

        return hostlocal.add(ipam, conf["name"], env.container_id, env.ifname, env.args, wait), OWN
    data = delegate(plugin, "ADD", conf, env)
    result = Result.from_json(data, f"the result of IPAM plugin {plugin}")
    if not result.ips:
        raise CniError(NO_ADDRESS, f"IPAM plugin {plugin} returned no address")
    return result, plugin


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
