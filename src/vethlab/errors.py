"""One error hierarchy.  Each error knows its exit status; the CLI maps them at one
boundary (cli/main.py), the CNI plugin to CNI codes.  Messages name the object and
the cause in the user's words."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CNI plugin ~3 ms per run
if TYPE_CHECKING:
    from typing import NamedTuple

    class _IssueFields(NamedTuple):
        file: str
        line: int | None
        path: str
        message: str
else:
    from operator import itemgetter

    class _IssueFields(tuple):  # what NamedTuple makes, without typing or collections (start-up cost)
        __slots__ = ()

        def __new__(cls, file: str, line: int | None, path: str, message: str) -> _IssueFields:
            return tuple.__new__(cls, (file, line, path, message))

        file = property(itemgetter(0))
        line = property(itemgetter(1))
        path = property(itemgetter(2))
        message = property(itemgetter(3))

        def __repr__(self) -> str:
            return f"Issue(file={self.file!r}, line={self.line!r}, path={self.path!r}, message={self.message!r})"


class VethlabError(Exception):
    """Base of every error vethlab raises on purpose.  Exit status 1 by default."""

    exit_code = 1


class UsageError(VethlabError):
    """Bad command-line use, or an ambiguous/unknown lab or node name."""

    exit_code = 2


class Issue(_IssueFields):
    """One problem in a topology file, at a line and a field path."""

    __slots__ = ()

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ValidationError(VethlabError):
    """The topology file is wrong; carries every problem found, not just the first."""

    exit_code = 2

    def __init__(self, issues: list[Issue]) -> None:
        self.issues = sorted(issues, key=lambda i: (i.line or 0, i.path))
        super().__init__("\n".join(str(i) for i in self.issues))


class ConflictError(VethlabError):
    """Something on the host is in the way (a foreign object of the same name, a
    missing kernel feature); found before anything is built."""


class KernelError(VethlabError):
    """A kernel operation failed; says which object and why, in plain words."""


class CommandFailed(VethlabError):
    """A command vethlab ran for the user (exec:, ping) failed."""


class LockTimeout(VethlabError):
    """Another vethlab process holds the lab's lock for longer than we may wait."""


class StateError(VethlabError):
    """vethlab's state directory cannot be trusted or read: owned by someone else,
    writable by others, a symlink where a file or directory belongs, permission
    denied.  Says which path, why, and what to do."""


class StateDamaged(StateError):
    """A lab's state file does not parse or has the wrong shape.  Names the file and
    the field; `down` and `clean` still remove the lab by its kernel markers."""

    def __init__(self, lab: str, path: str, reason: str) -> None:
        self.lab = lab
        self.path = path
        self.reason = reason
        super().__init__(f"the state of lab {lab} is damaged: {path}: {reason} "
                         f"(`vethlab down --lab {lab}` removes the lab by its kernel markers)")


class NotPermitted(VethlabError):
    """This user may not do what was asked (not root, outside a sandbox)."""
