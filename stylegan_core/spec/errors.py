"""Spec errors: every issue names the file, line, column and key path.

``str(SpecError)`` prints one line per issue::

    file:line:col: key.path: message (did you mean X, Y?)

Lines and columns are 1-based. ``exit_code`` is 3 when an issue is an unknown
plugin or part ``type`` (install or load a plugin, or fix the name), else 2.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence, Union

EXIT_INVALID = 2
EXIT_UNKNOWN = 3


@dataclass
class SpecIssue:
    """One problem: ``(file, line, col, path, message, suggestion)``; ``path`` is the dotted key path."""

    file: str
    line: int
    col: int
    path: str
    message: str
    suggestion: Optional[Union[str, Sequence[str]]] = None
    unknown_part: bool = False  # an unknown plugin or part name (exit code 3)

    def __post_init__(self) -> None:
        if self.suggestion is not None and not isinstance(self.suggestion, str):
            self.suggestion = ", ".join(map(str, self.suggestion)) or None
        self.line = max(1, int(self.line))
        self.col = max(1, int(self.col))

    @property
    def key_path(self) -> str:
        return self.path

    def __str__(self) -> str:
        where = f"{_one_line(self.file)}:{self.line}:{self.col}"
        key = f" {_one_line(self.path)}:" if self.path else ""
        hint = f" (did you mean {_one_line(self.suggestion)}?)" if self.suggestion else ""
        return f"{where}:{key} {_one_line(self.message)}{hint}"


def _one_line(text: object) -> str:
    """``text`` with every non-printable character escaped (``\\n``, ``\\x85``, ``\\u202e``).

    Keys, ``--set`` arguments and file names come from the user and may hold line breaks,
    control or bidi characters: printed raw they would split an issue over several lines or
    forge others. The issue keeps the raw values; only its text is escaped.
    """
    s = str(text)
    if s.isprintable():
        return s
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)


class SpecError(Exception):
    """One or more problems in a spec; ``exit_code`` is 3 for unknown plugins or parts, else 2."""

    def __init__(self, issues: Sequence[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(map(str, self.issues)))

    def __reduce__(self):  # picklable (multiprocessing, torchrun workers)
        return (type(self), (self.issues,))

    @property
    def exit_code(self) -> int:
        return EXIT_UNKNOWN if any(i.unknown_part for i in self.issues) else EXIT_INVALID


def pydantic_message(err: Any, limit: int = 3) -> str:
    """A pydantic ``ValidationError`` in one line: ``Model: field.path: message (got value); ...`` (the first
    ``limit`` problems), without pydantic's per-error type tags and documentation links."""
    try:
        problems = err.errors(include_url=False)
    except Exception:  # not a ValidationError: its own text, first line
        return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    parts = []
    for x in problems[:limit]:
        loc = ".".join(map(str, x.get("loc", ()))) or "value"
        msg = str(x.get("msg", "")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        got = repr(x.get("input"))
        parts.append(f"{loc}: {msg}" + (f" (got {got if len(got) <= 40 else got[:37] + '...'})"
                                          if "input" in x and not isinstance(x.get("input"), dict) else ""))
    more = f"; and {len(problems) - limit} more" if len(problems) > limit else ""
    title = getattr(err, "title", "")
    return _one_line((f"{title}: " if title else "") + "; ".join(parts) + more)


def spec_error(file: str, line: int, col: int, path: str, message: str, suggestion: Optional[str] = None,
               unknown_part: bool = False) -> SpecError:
    """A :class:`SpecError` of a single issue."""
    return SpecError([SpecIssue(file, line, col, path, message, suggestion, unknown_part)])
