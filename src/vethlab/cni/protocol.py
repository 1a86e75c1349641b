"""The CNI protocol's fixed parts: versions, the CNI_* environment, CNI_ARGS and
error objects (https://www.cni.dev/docs/spec/, "Error" and "Version").

Every failure leaves the plugin as a `CniError` printed on stdout as
`{"cniVersion", "code", "msg", "details"}` with exit status 1; codes 1-99 are the
spec's, 100 and up vethlab's own (see CODES)."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

#: what VERSION reports; 0.3.x results have the 0.4.0 shape, CHECK needs 0.4.0, STATUS and GC 1.1.0
SUPPORTED = ("0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0")
LATEST = "1.1.0"

# the spec's codes
INCOMPATIBLE_VERSION = 1
UNSUPPORTED_FIELD = 2
UNKNOWN_CONTAINER = 3
INVALID_ENVIRONMENT = 4
IO_FAILURE = 5
DECODING_FAILURE = 6
INVALID_CONFIG = 7
TRY_AGAIN_LATER = 11
CANNOT_ADD = 50  # STATUS: the plugin cannot serve ADD now
LIMITED_CONNECTIVITY = 51  # STATUS: existing containers may have limited connectivity
# vethlab's own (100 and up)
KERNEL_FAILURE = 100  # a netlink or nftables operation failed
CONFLICT = 101  # something not vethlab's is in the way (a foreign bridge, an address taken)
NO_ADDRESS = 102  # IPAM has no free address, or the delegated IPAM plugin failed
STATE_FAILURE = 103  # vethlab's state directory cannot be used
NOT_FOUND = 104  # join-a-lab: no such lab or network
CHECK_FAILED = 105  # CHECK found the attachment not as ADD left it
INTERNAL = 199  # a bug: the message says where; the traceback goes to the log

CODES = {
    INCOMPATIBLE_VERSION: "incompatible CNI version", UNSUPPORTED_FIELD: "unsupported field",
    UNKNOWN_CONTAINER: "container unknown or does not exist", INVALID_ENVIRONMENT: "invalid environment variables",
    IO_FAILURE: "I/O failure", DECODING_FAILURE: "failed to decode content", INVALID_CONFIG: "invalid network config",
    TRY_AGAIN_LATER: "try again later", CANNOT_ADD: "the plugin is not available",
    LIMITED_CONNECTIVITY: "limited connectivity", KERNEL_FAILURE: "kernel operation failed",
    CONFLICT: "conflict with an object vethlab did not create", NO_ADDRESS: "no address",
    STATE_FAILURE: "state directory unusable", NOT_FOUND: "no such lab or network",
    CHECK_FAILED: "attachment differs from what ADD made", INTERNAL: "internal error",
}


class CniError(Exception):
    """A failure to report as a CNI error object."""

    def __init__(self, code: int, details: str, msg: str | None = None) -> None:
        super().__init__(details)
        self.code = code
        self.msg = msg or CODES.get(code, "error")
        self.details = details

    def to_json(self, version: str) -> dict[str, Any]:
        return {"cniVersion": version, "code": self.code, "msg": self.msg, "details": self.details}


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def check_version(version: Any, command: str) -> str:
    """The config's cniVersion, if this plugin speaks it for `command` (code 1 if not)."""
    if not isinstance(version, str) or not version:
        raise CniError(INVALID_CONFIG, "cniVersion is missing or not a string")
    if version not in SUPPORTED:
        raise CniError(INCOMPATIBLE_VERSION, f"config is {version!r}, plugin supports {list(SUPPORTED)}")
    if command == "CHECK" and version_key(version) < (0, 4, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"CHECK needs cniVersion 0.4.0 or later, config is {version}")
    if command in ("STATUS", "GC") and version_key(version) < (1, 1, 0):
        raise CniError(INCOMPATIBLE_VERSION, f"{command} needs cniVersion 1.1.0 or later, config is {version}")
    return version


COMMANDS = ("ADD", "DEL", "CHECK", "VERSION", "STATUS", "GC")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def plain_name(name: str, extra: str, first_extra: str = "") -> bool:
    """ASCII letters and digits, plus `extra` after the first character (no `re`: its
    import is start-up cost, see jsonio.py)."""
    allowed = _ALNUM | frozenset(extra)
    return bool(name) and (name[0] in _ALNUM or name[0] in first_extra) and all(c in allowed for c in name)


class Env:
    """The CNI_* variables a command needs, checked (code 4 when missing or malformed)."""

    def __init__(self, command: str, container_id: str, netns: str, ifname: str, path: list[str],
                 args: dict[str, str], environ: dict[str, str] | None = None) -> None:
        self.environ = environ if environ is not None else {}  # all of it: a delegate inherits it
        self.command = command
        self.container_id = container_id
        self.netns = netns
        self.ifname = ifname
        self.path = path
        self.args = args


#: variables each command must have (the spec's table; DEL may run without a namespace)
REQUIRED = {"ADD": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "DEL": ("CNI_CONTAINERID", "CNI_IFNAME", "CNI_PATH"),
            "CHECK": ("CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_PATH"),
            "STATUS": ("CNI_PATH",), "GC": ("CNI_PATH",), "VERSION": ()}


def read_env(environ: dict[str, str] | os._Environ[str] | None = None) -> Env:
    env = os.environ if environ is None else environ
    command = env.get("CNI_COMMAND", "")
    if command not in COMMANDS:
        raise CniError(INVALID_ENVIRONMENT, f"CNI_COMMAND is {command!r}; expected one of {', '.join(COMMANDS)}")
    missing = [name for name in REQUIRED[command] if not env.get(name)]
    if missing:
        raise CniError(INVALID_ENVIRONMENT, f"required environment variables missing: {', '.join(missing)}")
    container_id = env.get("CNI_CONTAINERID", "")
    if container_id and (len(container_id) > 256 or not plain_name(container_id, "_.-")):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_CONTAINERID {container_id[:80]!r} is not a container id "
                       "(letters, digits, '_', '.', '-', starting with a letter or digit)")
    ifname = env.get("CNI_IFNAME", "")
    if ifname and (len(ifname.encode()) > 15 or ifname in (".", "..")
                   or any(c in "/:" or c.isspace() for c in ifname)):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_IFNAME {ifname[:40]!r} is not an interface name "
                       "(at most 15 bytes, no '/', ':' or spaces)")
    netns = env.get("CNI_NETNS", "")
    if netns and command in ("ADD", "CHECK") and not netns.startswith("/"):
        raise CniError(INVALID_ENVIRONMENT, f"CNI_NETNS {netns!r} is not an absolute path")
    path = [p for p in env.get("CNI_PATH", "").split(":") if p]
    return Env(command, container_id, netns, ifname, path, parse_args(env.get("CNI_ARGS", "")), dict(env))


#: CNI_ARGS keys this plugin understands; others need IgnoreUnknown=1 (code 2 otherwise)
KNOWN_ARGS = {"IgnoreUnknown", "IP", "MAC", "K8S_POD_NAME", "K8S_POD_NAMESPACE", "K8S_POD_INFRA_CONTAINER_ID",
              "K8S_POD_UID"}


def parse_args(text: str) -> dict[str, str]:
    """CNI_ARGS `K=V;K2=V2` (code 4 when malformed, 2 for unknown keys without
    IgnoreUnknown=1/true, as the reference plugins do)."""
    out: dict[str, str] = {}
    if not text:
        return out
    for pair in text.split(";"):
        if not pair:
            continue
        key, sep, value = pair.partition("=")
        if not sep or not plain_name(key, "_", "_"):
            raise CniError(INVALID_ENVIRONMENT, f"CNI_ARGS: {pair[:80]!r} is not KEY=VALUE")
        out[key] = value
    if out.get("IgnoreUnknown", "").lower() not in ("1", "true"):
        unknown = sorted(set(out) - KNOWN_ARGS)
        if unknown:
            raise CniError(UNSUPPORTED_FIELD, f"CNI_ARGS: unknown key {unknown[0]}={out[unknown[0]][:40]} "
                           "(add IgnoreUnknown=1 to pass keys this plugin does not use)")
    return out


def json_object(value: Any, code: int, what: str) -> dict[str, Any]:
    """`value` if it is a JSON object; else CniError(code) naming `what`."""
    if not isinstance(value, dict):
        raise CniError(code, f"{what}: not a JSON object")
    return value


def decode(data: bytes, what: str = "network config") -> dict[str, Any]:
    """The JSON object on stdin (code 6 when it is not one)."""
    if len(data) > 1 << 20:
        raise CniError(DECODING_FAILURE, f"{what}: {len(data)} bytes is more than the 1 MiB a config may have")
    from .jsonio import loads

    try:
        value = loads(data)
    except (ValueError, RecursionError) as exc:
        raise CniError(DECODING_FAILURE, f"{what} is not valid JSON: {str(exc)[:200]}") from None
    if not isinstance(value, dict):
        raise CniError(DECODING_FAILURE, f"{what} is not a JSON object")
    return value
