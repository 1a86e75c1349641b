"""Validated topologies, kept by content: reading the same file again skips YAML
and validation.

`vethlab up FILE` re-reads FILE on every run (then `plan`, `status`, `graph` of
the same file, an `up` that finds nothing to change, a test suite's hundred runs
of one lab).  Parsing and validating a 1000-link chain costs ~20 ms of CPU here
(40-60 ms before topology/quickyaml.py), plus ~5 ms of importing the loader and
the validator (and ~10 ms of PyYAML for a file the quick path leaves to libyaml);
reading its cached LabSpec back costs ~6 ms.  Only a file byte-for-byte identical
to one validated before is a hit: any edit is validated in full, like a first read.

The key is a SHA-256 of the file's bytes and of everything else the result
depends on: the source of topology/ and state/ (loader, validator, schema: a different
vethlab may read the same bytes differently), the Python version and PyYAML's
files.  Only successes are kept; an invalid file is always re-read, so its
errors are always the current ones.

Entries live in the state directory of the lab they describe
(STATE/LAB/topology-KEY.json, at most MAX_ENTRIES), so they go with the lab:
after `down` nothing of it is left, as before.  Only a lab that exists gets
entries, so a lab's first `up` keeps nothing; its next `plan` or `up` does.

vethlab runs as root and acts on the spec, so the cache must never be a way to
make it build something the file does not say:
- entries are opened through state/fs.py: the state root and the lab's
  directory must be the caller's and writable by nobody else, nothing is
  reached through a symlink, and an entry must be a regular file the caller
  owns, not writable by others; entries are written under the lab's lock;
- entries are JSON, never pickle: reading one cannot run code;
- an entry is decoded against LabSpec's type annotations (every field of every
  NamedTuple, with its type), must name the key it was looked up by, and must
  describe the lab whose directory holds it.  Anything else (a damaged,
  truncated, foreign or symlinked entry) is ignored and the file validated again;
- the cache never creates anything but its entries, and never makes a command
  fail: any error reading or writing it is a miss.

`VETHLAB_TOPOLOGY_CACHE=0` turns it off.
"""

from __future__ import annotations

import json
import os
import sys
import types
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin, get_type_hints

from ..digests import sha256
from ..errors import StateError

if TYPE_CHECKING:
    from ..topology.schema import LabSpec

PREFIX = "topology-"  # STATE/LAB/topology-SHA256.json
#: entries kept per lab (an edit, the file before it, ...); the oldest (by modification time) go first
MAX_ENTRIES = 8
#: an entry larger than this is not read (a 16 MiB file's spec is far smaller)
MAX_ENTRY_BYTES = 64 * 1024 * 1024
_FORMAT = 1
#: the packages whose source decides what a file validates to (the key hashes them;
#: state/ alone, as before, let an edited validator read old entries)
SOURCES = ("topology", "state")
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
    h = sha256()
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

        h = sha256(f"{_FORMAT}\0{__version__}\0{sys.version}\0".encode())
        package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for part in SOURCES:  # topology/: what reads a file; state/: this codec
            folder = os.path.join(package, part)
            for name in sorted(os.listdir(folder)):
                if name.endswith(".py"):
                    with open(os.path.join(folder, name), "rb") as fh:
                        h.update(f"{part}/{name}\0".encode() + fh.read() + b"\0")
        for entry in sys.path:
            where = os.path.join(entry or ".", "yaml")
            try:
                init, top = os.stat(os.path.join(where, "__init__.py")), os.stat(where)
            except OSError:
                continue
            h.update(f"{where}\0{init.st_size}\0{init.st_mtime_ns}\0{top.st_mtime_ns}".encode())
            break
        _ENV = h.digest()
    return _ENV


# -- the codec: JSON of the LabSpec, read back against its annotations --------------------------

def encode(spec: LabSpec) -> str:
    """JSON text of `spec` without its `file` (NamedTuples as lists of their fields).
    ValueError or TypeError when it holds anything that is not plain JSON data."""
    fields = list(type(spec).__dataclass_fields__)
    return json.dumps([None if name == "file" else getattr(spec, name) for name in fields],
                      allow_nan=False, separators=(",", ":"), default=_bytes_to_json)


def _bytes_to_json(value: Any) -> Any:
    """bytes (a node file's content, docs/nodes.md) as {"base64": TEXT}; anything else
    is not plain data: TypeError, as json says."""
    if type(value) is bytes:
        import base64

        return {"base64": base64.b64encode(value).decode("ascii")}
    raise TypeError(f"the topology cache cannot hold a {type(value).__name__}")


def decode(data: Any, file: str | None) -> LabSpec:
    """The LabSpec `encode` wrote, with `file`; _Bad unless every value has the type
    its annotation says."""
    from ..topology.schema import LabSpec

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
    if tp is bytes:
        def raw(value: Any) -> bytes:
            import base64
            import binascii

            if type(value) is not dict or value.keys() != {"base64"} or type(value["base64"]) is not str:
                raise _Bad
            try:
                return base64.b64decode(value["base64"], validate=True)
            except (binascii.Error, ValueError):
                raise _Bad from None

        return raw
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


# -- the store: in each lab's state directory ---------------------------------------------------

def get(digest: str, file: str) -> LabSpec | None:
    """The cached spec of the file whose key is `digest`, or None.  Looked for in
    every lab's directory (a handful of openat calls); an entry must describe the
    lab whose directory holds it."""
    from . import fs

    try:
        root = fs.open_root(_root(), create=False)
        if root is None:
            return None
        try:
            for lab in _labs(root):
                raw = _read(root, lab, f"{PREFIX}{digest}.json")
                if raw is None:
                    continue
                entry = json.loads(raw)
                if type(entry) is not dict or entry.get("key") != digest:
                    return None
                spec = decode(entry.get("spec"), file)
                return spec if spec.name == lab else None
        finally:
            os.close(root)
    except (OSError, StateError, ValueError, RecursionError, _Bad, TypeError):
        return None
    return None


def put(digest: str, spec: LabSpec) -> None:
    """Keep `spec` as the result of the file whose key is `digest`, in the
    directory of lab spec.name if that lab exists (best effort).  Written under
    the lab's lock, like everything in its directory: a running `up` or `down`
    of the lab (or this very process holding it) means no entry this time."""
    from ..errors import LockTimeout
    from . import fs
    from .lock import LabLock
    from .store import STATE_FILE

    try:
        text = f'{{"key":"{digest}","spec":{encode(spec)}}}'
        root = fs.open_root(_root(), create=False)
        if root is None:
            return
        try:
            folder = fs.open_dir(root, spec.name, os.path.join(_root(), spec.name), False,
                                 f"the state directory of lab {spec.name}")
        finally:
            os.close(root)
        if folder is None:
            return  # the lab does not exist (yet): its first `up` keeps nothing
        try:
            with LabLock(spec.name, wait=0.0, say=False):
                os.stat(STATE_FILE, dir_fd=folder, follow_symlinks=False)  # FileNotFoundError: being removed
                tmp = f".{PREFIX}tmp"
                fd = fs.open_scratch(folder, tmp, tmp)
                with os.fdopen(fd, "wb") as fh:  # no fsync: a torn entry after a crash is just a miss
                    fh.write(text.encode())
                os.replace(tmp, f"{PREFIX}{digest}.json", src_dir_fd=folder, dst_dir_fd=folder)
                _trim(folder)
        finally:
            os.close(folder)
    except (OSError, StateError, LockTimeout, ValueError, TypeError, RecursionError):
        return


def _root() -> str:
    from .store import state_root

    return state_root()


def _labs(root: int) -> list[str]:
    from ..topology.naming import lab_problem

    return sorted(name for name in os.listdir(root) if not lab_problem(name))


def _read(root: int, lab: str, name: str) -> bytes | None:
    """The bytes of entry `name` of lab `lab`, checked by state/fs.py; None if absent."""
    from . import fs

    fd = fs.read_in_lab(root, lab, os.path.join(_root(), lab), name, "a topology cache entry")
    if fd is None:
        return None
    with os.fdopen(fd, "rb") as fh:
        raw = fh.read(MAX_ENTRY_BYTES + 1)
    return raw if len(raw) <= MAX_ENTRY_BYTES else None


def _trim(folder: int) -> None:
    entries = []
    for name in os.listdir(folder):
        if name.startswith(PREFIX):
            try:
                entries.append((os.stat(name, dir_fd=folder, follow_symlinks=False).st_mtime_ns, name))
            except FileNotFoundError:
                continue
    for _mtime, name in sorted(entries)[:-MAX_ENTRIES]:
        os.unlink(name, dir_fd=folder)


def load_lab(path: str) -> LabSpec:
    """Read, parse and validate a topology file, as topology.load_lab does — but a
    file read before, byte for byte, comes from the cache (what `up` again, `plan`
    and `status` of an unchanged file skip: YAML and validation)."""
    from ..topology.files import read

    raw = read(path)
    digest = key(raw) if enabled() else None
    spec = get(digest, path) if digest else None
    if spec is None:
        from ..topology.loader import load_bytes
        from ..topology.validate import parse_document

        spec = parse_document(load_bytes(raw, path))
        if digest:
            put(digest, spec)
    return spec
