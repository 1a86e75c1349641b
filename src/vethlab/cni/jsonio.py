"""JSON in and out without the `json` package: `json.decoder` imports `re`, and with
it enum, functools and collections, ~3 ms of every plugin run (measured with
bench/cni.py's CPU column; the plugin's whole budget is the reference's ~17 ms).

The parsing is CPython's own C scanner (`_json.make_scanner`, what json.loads uses
underneath), so what it accepts is exactly JSON; only the driving code is here.
The writer covers the values the plugin writes: dicts with string keys, lists,
strings, ints, bools, None."""

from __future__ import annotations

import _json

TYPE_CHECKING = False  # typing itself is not imported at run time: start-up cost (main.py)
if TYPE_CHECKING:
    from typing import Any

_WHITESPACE = " \t\n\r"


class _Context:
    """The attributes `_json.make_scanner` reads (json.JSONDecoder's defaults)."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    memo: dict[str, str] = {}

    @staticmethod
    def parse_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")


_scan = _json.make_scanner(_Context())  # type: ignore[arg-type]  # the stub wants a JSONDecoder: any object with its attributes will do


def loads(data: bytes | str) -> Any:
    """The value, or ValueError (RecursionError for absurd nesting) saying why not."""
    text = data.decode("utf-8") if isinstance(data, bytes) else data  # UnicodeDecodeError is a ValueError
    start = len(text) - len(text.lstrip(_WHITESPACE))
    try:
        value, end = _scan(text, start)
    except StopIteration as exc:
        raise ValueError(f"expecting a value at character {exc.value}") from None
    except SystemError:
        # the C scanner raises its errors as json.decoder.JSONDecodeError, and finds
        # that class only once json.decoder is imported: on this (error) path, import
        # it and let json say what is wrong, with the position
        import json

        json.loads(text)
        raise ValueError("not JSON") from None
    rest = len(text) - len(text.rstrip(_WHITESPACE))
    if end != len(text) - rest:
        raise ValueError(f"extra data at character {end}")
    return value


def dumps(value: Any, compact: bool = False, sort_keys: bool = False) -> str:
    out: list[str] = []
    _write(value, out, (",", ":") if compact else (", ", ": "), sort_keys)
    return "".join(out)


def _write(value: Any, out: list[str], seps: tuple[str, str], sort_keys: bool) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_json.encode_basestring_ascii(value))
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"{value!r} is not JSON")
        out.append(float.__repr__(value))
    elif isinstance(value, dict):
        out.append("{")
        items = sorted(value.items()) if sort_keys else value.items()
        for i, (key, item) in enumerate(items):
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys are strings, not {type(key).__name__}")
            if i:
                out.append(seps[0])
            out.append(_json.encode_basestring_ascii(key))
            out.append(seps[1])
            _write(item, out, seps, sort_keys)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(seps[0])
            _write(item, out, seps, sort_keys)
        out.append("]")
    else:
        raise TypeError(f"{type(value).__name__} is not JSON serialisable")
