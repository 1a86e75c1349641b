"""nftables through its JSON interface, one atomic batch per change.

Spoken to through libnftables in this process (ctypes), not the `nft` command:
the library is what `nft` itself is a thin front to (same parser, same JSON, same
error text), and Debian's `nftables` package, in ./run's APT_PACKAGES, depends on
it (libnftables1).  Measured in a sandbox here: `nft -j list chains inet` as a
process takes 2.5-3 ms quiet and 7-10 ms on a busy machine; the same command in
process 0.2 ms.  `down` of a lab routing through the host asks nftables up to four
times.  Debian's python3-nftables would be the official binding, but it imports
only under the system interpreter (a venv without system site-packages does not
see it); the few calls needed here are declared below instead.  A node's
namespace is entered by a worker thread (netns.call_inside) that makes its own
library context there, so its netlink socket is the node's.  Where the library
cannot be loaded, or while this process holds so many descriptors that the
library's would land past select()'s limit (`FD_LIMIT`), the `nft` command is run
as before (in a node through `ip netns exec`).
"""

from __future__ import annotations

import ctypes
import json
import os
from _thread import allocate_lock  # not threading: the CNI plugin imports this module, and it spares ~2 ms
from typing import Any

from ..errors import ConflictError, KernelError
from ..ownership import table_owner

Netns = str | None

_NFT_CTX_OUTPUT_JSON = 1 << 4
_lock = allocate_lock()  # one library call at a time: its first context sets up process-wide state
_lib: ctypes.CDLL | None = None
_tried = False


def _library() -> ctypes.CDLL | None:
    """libnftables, its calls declared; None where it cannot be loaded."""
    global _lib, _tried
    if not _tried:
        _tried = True
        try:
            lib = ctypes.CDLL("libnftables.so.1")
        except OSError:
            return None
        lib.nft_ctx_new.restype = ctypes.c_void_p
        lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
        lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
        lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
        for name in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
        for name in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
            getattr(lib, name).argtypes = [ctypes.c_void_p]
            getattr(lib, name).restype = ctypes.c_char_p
        lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        _lib = lib
    return _lib


def _in_process(lib: ctypes.CDLL, command: str) -> tuple[int, str, str]:
    """(status, output, error text) of one command, as `nft -j` would give them."""
    with _lock:
        ctx = lib.nft_ctx_new(0)
        if not ctx:
            raise KernelError("nftables: cannot make a libnftables context (out of memory?)")
        try:
            lib.nft_ctx_output_set_flags(ctx, _NFT_CTX_OUTPUT_JSON)  # JSON out; JSON in, as `nft -j -f` reads it
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            status = lib.nft_run_cmd_from_buffer(ctx, command.encode())
            out = lib.nft_ctx_get_output_buffer(ctx) or b""
            err = lib.nft_ctx_get_error_buffer(ctx) or b""
        finally:
            lib.nft_ctx_free(ctx)
    return status, out.decode(errors="replace"), err.decode(errors="replace")


def _nft() -> str:
    import shutil  # the fallback's alone

    path = shutil.which("nft") or ("/usr/sbin/nft" if os.path.exists("/usr/sbin/nft") else None)
    if path is None:
        raise ConflictError("nftables is needed for nat, published ports and isolation: apt-get install nftables")
    return path


#: libnftables waits for the kernel's answer with select(), whose fd_set ends at
#: descriptor 1024: glibc aborts the whole process when the library's socket lands
#: beyond (`up` of a 1000-node lab holds a netlink socket per namespace).  Above this
#: lowest free descriptor the `nft` command runs instead (a fresh process, low fds);
#: the margin covers descriptors other threads may open meanwhile.
FD_LIMIT = 768


def _low_fds() -> bool:
    """The next descriptor opened would be well below select()'s FD_SETSIZE."""
    try:
        fd = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # the lowest free one
    except OSError:  # no /dev/null, or no descriptor left: the command it is
        return False
    os.close(fd)
    return fd < FD_LIMIT


def _run(ns: Netns, command: str, batch: bool = False) -> tuple[int, str, str]:
    """(status, output, error text) of one nft command in `ns`: its words, or with
    `batch` a JSON batch (what `nft -j -f -` reads)."""
    lib = _library()
    if lib is not None and _low_fds():
        if ns is None:
            return _in_process(lib, command)
        from . import netns as nsmod

        return nsmod.call_inside(ns, lambda: _in_process(lib, command))
    import subprocess

    from .process import node_argv

    args = ["-j", "-f", "-"] if batch else ["-j", *command.split()]
    result = subprocess.run(node_argv(ns, [_nft(), *args], view=False), input=command if batch else None,
                            capture_output=True, text=True, check=False)
    return result.returncode, result.stdout, result.stderr


def apply(ns: Netns, batch: dict[str, Any], what: str) -> None:
    status, _out, err = _run(ns, json.dumps(batch), batch=True)
    if status != 0:
        raise KernelError(f"cannot {what}: nft said: {err.strip()[:600]}")


def tables(ns: Netns) -> dict[str, list[str]]:
    """The inet tables of a namespace that have chains, with their chain names (one
    `nft list chains`, however many tables there are): whose each is, is
    ownership.table_owner's to say."""
    status, out, _err = _run(ns, "list chains inet")
    if status != 0:
        return {}
    by_table: dict[str, list[str]] = {}
    for item in json.loads(out or "{}").get("nftables", []):
        if "chain" in item:
            by_table.setdefault(item["chain"]["table"], []).append(item["chain"]["name"])
    return by_table


def ruleset(ns: Netns) -> list[dict[str, Any]]:
    """The whole ruleset of a namespace as nft's JSON items (tables, chains, rules of
    every family), or [] when nft cannot list it."""
    status, out, _err = _run(ns, "list ruleset")
    if status != 0:
        return []
    try:
        items = json.loads(out or "{}").get("nftables", [])
    except ValueError:
        return []
    return [item for item in items if isinstance(item, dict)]


def chains(ns: Netns, table: str) -> list[str] | None:
    """Chain names of an inet table, or None when there is no such table."""
    status, out, _err = _run(ns, f"list table inet {table}")
    if status != 0:
        return None
    data = json.loads(out or "{}")
    return [item["chain"]["name"] for item in data.get("nftables", []) if "chain" in item]


def delete(ns: Netns, table: str) -> None:
    """Delete a lab's table; one without the lab's marker chain is not vethlab's and stays."""
    have = chains(ns, table)
    if have is None or table_owner(table, have) is None:
        return
    apply(ns, {"nftables": [{"delete": {"table": {"family": "inet", "name": table}}}]}, f"delete table {table}")
