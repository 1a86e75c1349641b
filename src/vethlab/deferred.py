"""`dataclass`, made when first needed: the stdlib's dataclasses, generated on the
class's first use instead of at import.

Generating a dataclass exec()s one small source text per method (`__init__`,
`__repr__`, `__eq__`, and for a frozen one `__hash__`, `__setattr__`,
`__delattr__`): ~0.4 ms for a frozen action.  `vethlab up` imported 58 of them
(every driver's actions, whatever the lab holds) for ~30 ms of its start-up, and
a run instantiates 13 to 25 of them.  A class decorated here is an ordinary class
until its first instance (a call, or pickle and copy setting an instance's state),
or until anything asks for its fields (`dataclasses.fields`, `is_dataclass`,
`replace`, `asdict`, a dataclass that derives from it): then the stdlib's
`dataclasses.dataclass` processes it, with the same arguments, and it is from then
on exactly the class that decorator makes.

Type checkers see the stdlib's decorator itself (the `TYPE_CHECKING` branch), so
mypy checks these classes as the dataclasses they become.  What differs before
the first use: a field's default read on the class (`Cls.x`) is still the value
or `field()` written in the class body, and a mistake the stdlib refuses (a
non-default field after a default one, a non-frozen class deriving from a frozen
one) is raised at the first use, not at import -- tests/unit/test_deferred.py
makes every class of vethlab once, so such a mistake fails a unit test.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: this module is imported by `down` and the CNI plugin (mypy knows the name)

if TYPE_CHECKING:
    from dataclasses import dataclass as dataclass
else:
    import _thread

    _FIELDS = "__dataclass_fields__"
    _LOCK = _thread.RLock()  # a base is made inside its subclass's making: re-entrant
    _PENDING: dict = {}  # class -> (the decorator's arguments, its own __init__, __setstate__), until made

    def dataclass(cls=None, /, **params):
        """`dataclasses.dataclass`, applied at the class's first use.  `slots=True`
        (which returns a new class) is applied at once."""
        def wrap(cls):
            if params.get("slots"):
                from dataclasses import dataclass as now

                return now(cls, **params)
            _PENDING[cls] = (params, cls.__dict__.get("__init__"), cls.__dict__.get("__setstate__"))
            # the first instance: make the class, then initialise as it now does
            def __init__(self, *args, **kwargs):
                make(cls)
                cls.__init__(self, *args, **kwargs)
            __init__.__qualname__ = f"{cls.__qualname__}.__init__"
            cls.__init__ = __init__
            # an instance made without __init__ (pickle, copy): make the class before its state is set
            def __setstate__(self, state):
                make(cls)
                if hasattr(self, "__setstate__"):
                    self.__setstate__(state)
                else:
                    self.__dict__.update(state)
            cls.__setstate__ = __setstate__
            # the first question about its fields (dataclasses looks them up by this name)
            setattr(cls, _FIELDS, _Fields(cls))
            return cls

        return wrap if cls is None else wrap(cls)

    class _Fields:
        """Stands in for a pending class's `__dataclass_fields__`: reading it makes
        the class and gives the real fields."""

        def __init__(self, cls):
            self.cls = cls

        def __get__(self, obj, owner=None):
            return make(self.cls)

    def make(cls):
        """Process a pending class with the stdlib's decorator (once); its fields."""
        with _LOCK:
            params, own_init, own_setstate = _PENDING.pop(cls, (None, None, None))
            if params is not None:
                from dataclasses import dataclass as now

                for name, own in (("__init__", own_init), ("__setstate__", own_setstate)):
                    if own is None:
                        delattr(cls, name)  # the stand-in (the stdlib keeps an __init__ the class defines)
                    else:
                        setattr(cls, name, own)
                delattr(cls, _FIELDS)
                now(cls, **params)
        return cls.__dict__[_FIELDS]

    def pending():
        """The classes not made yet (for tests)."""
        return list(_PENDING)
