"""Validated topologies, kept by content: reading the same file again skips YAML
and validation.

`vethlab up FILE` re-reads FILE on every run (then `plan`, `status`, `graph` of
the same file, an `up` that finds nothing to change, a test suite's hundred runs
of one lab).  Parsing and validating a 1000-node file costs 40-60 ms of CPU here,
plus ~15 ms of importing PyYAML and the validator; reading its cached LabSpec back
costs a few ms.  Only a file byte-for-byte identical to one validated before is a
hit: any edit is validated in full, like a first read.

The key is a SHA-256 of the file's bytes and of everything else the result
depends on: the source of this package (loader, validator, schema: a different
vethlab may read the same bytes differently), the Python version and PyYAML's
files.  Only successes are kept; an invalid file is always re-read, so its
errors are always the current ones.

vethlab runs as root and acts on the spec, so the cache must never be a way to
make it build something the file does not say:
- it lives in the state root ($VETHLAB_STATE_DIR, default /run/vethlab), opened
  through state/fs.py: the root and the cache directory must be the caller's
  and writable by nobody else, nothing is reached through a symlink, and an
  entry must be a regular file the caller owns, not writable by others;
- entries are JSON, never pickle: reading one cannot run code;
- an entry is decoded against LabSpec's type annotations (every field of every
  NamedTuple, with its type), and must name the key it was looked up by.
  Anything else (a damaged, truncated, foreign or symlinked entry) is ignored
  and the file validated again;
- the cache never creates the state root (only `up` does) and never makes a
  command fail: any error reading or writing it is a miss.

`VETHLAB_TOPOLOGY_CACHE=0` turns it off.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from ..errors import StateError

if TYPE_CHECKING:
    from .schema import LabSpec

CACHE_DIR = ".topology-cache"  # in the state root; never a lab name (those start with a letter or digit)
#: entries kept; the oldest (by modification time) go first
MAX_ENTRIES = 32
#: an entry larger than this is not read (a 16 MiB file's spec is far smaller)
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_FORMAT = 1
_Decoder = Callable[[Any], Any]


class _Bad(Exception):
    """An entry that does not decode to a LabSpec: ignored."""


def enabled() -> bool:
    return os.environ.get("VETHLAB_TOPOLOGY_CACHE", "1") != "0"


def key(raw: bytes) -> str | None:
    """The cache key of a file's bytes, for this vethlab, Python and PyYAML; None
    (no caching) when what else decides the result cannot be read."""
    try:
        environment = _environment()
    except OSError:
        return None
    h = hashlib.sha256()
    h.update(environment)
    h.update(len(raw).to_bytes(8, "little"))
    h.update(raw)
    return h.hexdigest()


_ENV: bytes | None = None


def _environment() -> bytes:
    """What else decides what a file validates to: this package's source (the
    loader, the validator, the schema, this codec), vethlab's version, Python's
    version, and PyYAML's files (found without importing it: a hit must not pay
    for the import)."""
    global _ENV
    if _ENV is None:
        from .. import __version__

        h = hashlib.sha256(f"{_FORMAT}\0{__version__}\0{sys.version}\0".encode())
        here = os.path.dirname(os.path.abspath(__file__))
        for name in sorted(os.listdir(here)):
            if name.endswith(".py"):
                with open(os.path.join(here, name), "rb") as fh:
                    h.update(f"{name}\0".encode() + fh.read() + b"\0")
        for entry in sys.path:
            where = os.path.join(entry or ".", "yaml")
            try:
                init, folder = os.stat(os.path.join(where, "__init__.py")), os.stat(where)
            except OSError:
                continue
            h.update(f"{where}\0{init.st_size}\0{init.st_mtime_ns}\0{folder.st_mtime_ns}".encode())
            break
        _ENV = h.digest()
    return _ENV


# -- the codec: JSON of the LabSpec, read back against its annotations --------------------------

def encode(spec: LabSpec) -> str:
    """JSON text of `spec` without its `file` (NamedTuples as lists of their fields).
    ValueError or TypeError when it holds anything that is not plain JSON data."""
    fields = list(type(spec).__dataclass_fields__)
    return json.dumps([None if name == "file" else getattr(spec, name) for name in fields],
                      allow_nan=False, separators=(",", ":"))


def decode(data: Any, file: str | None) -> LabSpec:
    """The LabSpec `encode` wrote, with `file`; _Bad unless every value has the type
    its annotation says."""
    from .schema import LabSpec

    names = list(LabSpec.__dataclass_fields__)
    if type(data) is not list or len(data) != len(names):
        raise _Bad
    spec: LabSpec = _decoder(LabSpec)([file if name == "file" else value
                                       for name, value in zip(names, data, strict=True)])
    return spec


_DECODERS: dict[Any, _Decoder] = {}


def _decoder(tp: Any) -> _Decoder:
    """A function checking a JSON value against type `tp` and building it."""
    found = _DECODERS.get(tp)
    if found is None:
        found = _DECODERS[tp] = _make(tp)
    return found


def _scalars(tp: Any) -> frozenset[type] | None:
    """The JSON types a scalar annotation allows (str, int, bool, float, None and
    unions of them), or None when `tp` is not a scalar.  bool is not an int here:
    JSON keeps them apart, and so does the check."""
    if tp in (str, int, bool, type(None)):
        return frozenset([tp])
    if tp is float:
        return frozenset([float, int])
    if get_origin(tp) in (types.UnionType, Union):
        parts = [_scalars(arg) for arg in get_args(tp)]
        if all(part is not None for part in parts):
            return frozenset().union(*[part for part in parts if part is not None])
    return None


def _make(tp: Any) -> _Decoder:
    """Scalars are checked by type; lists of scalars in one pass of map(type) (a
    1000-node file's spec is ~4000 records and ~12000 lists: this is the hot path)."""
    origin, args = get_origin(tp), get_args(tp)
    scalars = _scalars(tp)
    if scalars is not None:
        def scalar(value: Any) -> Any:
            if type(value) not in scalars:
                raise _Bad
            return value

        return scalar
    if origin is types.UnionType or origin is Union:
        return _union([_decoder(arg) for arg in args])
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return _sequence(args[0])
    if origin is tuple:
        return _record(tuple, list(args), tuple)
    if origin is dict and args[0] is str:
        item = _decoder(args[1])

        def mapping(value: Any) -> dict[str, Any]:
            if type(value) is not dict:
                raise _Bad
            return {k: item(v) for k, v in value.items()}  # JSON object keys are always text

        return mapping
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        named: Any = tp  # a NamedTuple class
        hints = get_type_hints(tp)
        return _record(tp, [hints[name] for name in named._fields], named._make)
    if isinstance(tp, type) and hasattr(tp, "__dataclass_fields__"):
        hints = get_type_hints(tp)
        return _record(tp, [hints[name] for name in tp.__dataclass_fields__], lambda values: tp(*values))
    raise TypeError(f"the topology cache cannot hold a {tp!r}")  # a new kind of field: teach _make


def _sequence(item_type: Any) -> _Decoder:
    """tuple[X, ...] from a JSON list."""
    scalars = _scalars(item_type)
    if scalars is not None:
        def of_scalars(value: Any) -> tuple[Any, ...]:
            if type(value) is not list or not set(map(type, value)) <= scalars:
                raise _Bad
            return tuple(value)

        return of_scalars
    item = _decoder(item_type)

    def of_items(value: Any) -> tuple[Any, ...]:
        if type(value) is not list:
            raise _Bad
        return tuple([item(x) for x in value]) if value else ()

    return of_items


def _union(alternatives: list[_Decoder]) -> _Decoder:
    def first(value: Any) -> Any:
        if value is None and none_allowed:
            return None
        for alternative in alternatives:
            try:
                return alternative(value)
            except _Bad:
                pass
        raise _Bad

    none_allowed = any(_fails(alternative, None) is False for alternative in alternatives)
    return first


def _fails(decoder: _Decoder, value: Any) -> bool:
    try:
        decoder(value)
    except _Bad:
        return True
    return False


def _record(tp: Any, hints: list[Any], build: Callable[[Any], Any]) -> _Decoder:
    """A NamedTuple, dataclass or fixed tuple from a JSON list of its fields."""
    # per field: the scalar types it allows, or its decoder; filled after registering
    # (a record may one day contain itself)
    plan: list[tuple[frozenset[type] | None, _Decoder | None]] = []
    count = len(hints)

    def record(value: Any) -> Any:
        if type(value) is not list or len(value) != count:
            raise _Bad
        out = []
        for x, (scalars, item) in zip(value, plan, strict=True):
            if scalars is not None:
                if type(x) not in scalars:
                    raise _Bad
                out.append(x)
            else:
                out.append(item(x))  # type: ignore[misc]
        return build(out)

    if tp is not tuple:
        _DECODERS[tp] = record
    for hint in hints:
        scalars = _scalars(hint)
        plan.append((scalars, None if scalars is not None else _decoder(hint)))
    return record


# -- the store ----------------------------------------------------------------------------------

def get(digest: str, file: str) -> LabSpec | None:
    """The cached spec of the file whose key is `digest`, or None."""
    from ..state import fs

    try:
        with _directory(create=False) as folder:
            if folder is None:
                return None
            name = f"{digest}.json"
            try:
                fd = fs.open_file(folder, name, name, os.O_RDONLY, "a topology cache entry")
            except FileNotFoundError:
                return None
            with os.fdopen(fd, "rb") as fh:
                raw = fh.read(MAX_ENTRY_BYTES + 1)
        if len(raw) > MAX_ENTRY_BYTES:
            return None
        entry = json.loads(raw)
        if type(entry) is not dict or entry.get("key") != digest:
            return None
        return decode(entry.get("spec"), file)
    except (OSError, StateError, ValueError, RecursionError, _Bad, TypeError):
        return None


def put(digest: str, spec: LabSpec) -> None:
    """Keep `spec` as the result of the file whose key is `digest` (best effort)."""
    from ..state import fs

    try:
        text = f'{{"key":"{digest}","spec":{encode(spec)}}}'
        with _directory(create=True) as folder:
            if folder is None:
                return
            tmp = f".tmp.{os.getpid()}"
            fd = fs.open_scratch(folder, tmp, tmp)
            with os.fdopen(fd, "wb") as fh:  # no fsync: a torn entry after a crash is just a miss
                fh.write(text.encode())
            os.replace(tmp, f"{digest}.json", src_dir_fd=folder, dst_dir_fd=folder)
            _trim(folder)
    except (OSError, StateError, ValueError, TypeError, RecursionError):
        return


def _trim(folder: int) -> None:
    entries = []
    for name in os.listdir(folder):
        try:
            entries.append((os.stat(name, dir_fd=folder, follow_symlinks=False).st_mtime_ns, name))
        except FileNotFoundError:
            continue
    import time

    stale = time.time_ns() - 60 * 10**9
    temps = [(mtime, name) for mtime, name in entries if name.startswith(".tmp.")]
    for mtime, name in temps:  # a killed writer's; a live one's is younger than a minute
        if mtime < stale:
            os.unlink(name, dir_fd=folder)
    for _mtime, name in sorted(set(entries) - set(temps))[:-MAX_ENTRIES]:
        os.unlink(name, dir_fd=folder)


class _directory:
    """The cache directory's descriptor (None when the state root does not exist),
    checked like every state directory."""

    def __init__(self, create: bool) -> None:
        self.create = create
        self.fds: list[int] = []

    def __enter__(self) -> int | None:
        from ..state import fs
        from ..state.store import state_root

        root = fs.open_root(state_root(), create=False)
        if root is None:
            return None
        self.fds.append(root)
        folder = fs.open_dir(root, CACHE_DIR, os.path.join(state_root(), CACHE_DIR), self.create,
                             "the topology cache directory")
        if folder is not None:
            self.fds.append(folder)
        return folder

    def __exit__(self, *exc: object) -> None:
        for fd in self.fds:
            os.close(fd)
