"""vethlab.deferred: dataclasses generated at their first use, not at import.

The classes must behave exactly as the stdlib makes them once used, and importing
the planning machinery must not make them (that is the start-up they save)."""

from __future__ import annotations

import dataclasses
import pickle
import subprocess
import sys
from typing import Any, ClassVar

import pytest

from helpers import fresh_python
from vethlab import deferred


def _pair(**params: bool) -> list[tuple[Any, Any]]:
    """The same two classes (a base and a subclass), made by the stdlib and deferred."""
    out = []
    for make in (dataclasses.dataclass, deferred.dataclass):
        @make(**params)
        class Base:
            KIND: ClassVar[str] = "base"
            a: int
            b: list[int] = dataclasses.field(default_factory=list)

        @make(**params)
        class Sub(Base):
            c: str = dataclasses.field(default="x", metadata={"hidden": True})

        out.append((Base, Sub))
    return out


def _outcome(check: Any, cls: Any) -> Any:
    """What check(cls) gives: its value, or the type of what it raised."""
    try:
        return check(cls)
    except Exception as exc:  # noqa: BLE001 -- compared, not handled
        return type(exc)


@pytest.mark.parametrize("params", [{}, {"frozen": True}, {"eq": False}, {"order": True}, {"unsafe_hash": True}])
def test_a_deferred_dataclass_is_the_stdlibs_once_used(params: dict[str, bool]) -> None:
    (sb, ss), (db, ds) = _pair(**params)
    assert deferred.pending()[-2:] == [db, ds]
    s, d = ss(1, [2], "y"), ds(1, [2], "y")  # the subclass first: its base is made on the way
    assert db not in deferred.pending() and ds not in deferred.pending()
    assert repr(s).split("(", 1)[1] == repr(d).split("(", 1)[1]
    assert [(f.name, f.default, dict(f.metadata)) for f in dataclasses.fields(d)] == \
        [(f.name, f.default, dict(f.metadata)) for f in dataclasses.fields(s)]
    assert dataclasses.asdict(d) == dataclasses.asdict(s) == {"a": 1, "b": [2], "c": "y"}
    assert dataclasses.replace(d, a=5).a == 5 and ds.__match_args__ == ss.__match_args__ == ("a", "b", "c")
    assert ds.__doc__ == ss.__doc__ and ds.c == ss.c == "x"
    for check in (lambda cls: cls(1, [2], "y") == cls(1, [2], "y"), lambda cls: cls(1) == cls(1, [3]),
                  lambda cls: hash(cls(1)), lambda cls: cls(1) < cls(2), lambda cls: cls(),
                  lambda cls: setattr(cls(1), "a", 2), lambda cls: cls.__hash__ is None):
        assert _outcome(check, ds) == _outcome(check, ss), params
    for check in (lambda cls: cls(1) == cls(1), lambda cls: hash(cls(1)) == hash(cls(1))):
        assert _outcome(check, db) == _outcome(check, sb), params


def test_fields_asked_of_the_class_make_it() -> None:
    (_, _), (base, sub) = _pair(frozen=True)
    assert dataclasses.is_dataclass(sub)
    assert [f.name for f in dataclasses.fields(sub)] == ["a", "b", "c"]  # not the base's fields
    assert base not in deferred.pending() and sub not in deferred.pending()
    assert sub.c == "x"  # the default is set on the class once made


def test_a_class_with_its_own_init_keeps_it() -> None:
    @deferred.dataclass
    class Own:
        a: int

        def __init__(self, text: str) -> None:
            self.a = int(text)

    assert Own("4").a == 4 and repr(Own("4")) == f"{Own.__qualname__}(a=4)"


def test_an_instance_made_without_init_makes_its_class_first() -> None:
    """pickle (and copy) create an instance with cls.__new__ and then set its state:
    a class still pending is made first, so the instance has its dataclass methods."""
    from vethlab.kernel.api import LinkEvent, LinkState

    event = LinkEvent("n1", LinkState(7, "e0", None, True, True, "up"), False)
    probe = ("import pickle, sys\n"
             "from vethlab import deferred\n"
             "from vethlab.kernel.api import LinkEvent, LinkState\n"
             "assert LinkEvent in deferred.pending() and LinkState in deferred.pending()\n"
             "back = pickle.loads(sys.stdin.buffer.read())\n"
             "assert LinkEvent not in deferred.pending() and LinkState not in deferred.pending()\n"
             "import copy\n"
             "again = LinkEvent('n1', LinkState(7, 'e0', None, True, True, 'up'), False)\n"
             "assert back == again == copy.copy(back) == copy.deepcopy(back) and hash(back) == hash(again)\n"
             "print(repr(back))")
    out = subprocess.run([sys.executable, "-c", probe], input=pickle.dumps(event), capture_output=True, check=True).stdout
    assert out.decode().strip() == repr(event)


def test_every_dataclass_of_vethlab_can_be_made() -> None:
    """A mistake the stdlib refuses at class creation (a field without a default
    after one with, a mutable default, non-frozen from frozen) now shows at first
    use: make every class of every module here (in a fresh process: other tests
    have made some in this one)."""
    probe = ("import dataclasses, importlib, pkgutil, vethlab\n"
             "from vethlab import deferred\n"
             "for info in pkgutil.walk_packages(vethlab.__path__, 'vethlab.'):\n"
             "    if info.name not in ('vethlab.__main__', 'vethlab.cli.demo'):\n"
             "        importlib.import_module(info.name)\n"
             "pending = deferred.pending()\n"
             "for cls in pending:\n"
             "    assert dataclasses.fields(cls), cls\n"
             "assert deferred.pending() == []\n"
             "print(len(pending))")
    out = fresh_python(probe)
    assert int(out) > 40


def test_importing_the_planner_and_every_driver_makes_no_dataclass() -> None:
    """The start-up this module saves: `up` imports every driver's actions, and a
    run instantiates only the kinds its lab has."""
    probe = ("import sys, vethlab.cli.lifecycle, vethlab.lab, vethlab.reconcile.up, vethlab.drivers.registry, "
             "vethlab.ops.down\n"
             "print(sorted(f'{m.__name__}.{n}' for m in list(sys.modules.values()) "
             "if getattr(m, '__name__', '').startswith('vethlab.') for n, c in vars(m).items() "
             "if isinstance(c, type) and c.__module__ == m.__name__ and '__dataclass_params__' in c.__dict__))")
    out = fresh_python(probe)
    assert out.strip() == "[]"
