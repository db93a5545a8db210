"""Spec errors: every issue names the file, line, column and key path."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

EXIT_INVALID = 2
EXIT_UNKNOWN = 3


@dataclass
class SpecIssue:
    file: str
    line: int
    col: int
    path: str
    message: str
    suggestion: Optional[str] = None
    unknown_part: bool = False  # an unknown plugin or part name (exit code 3)

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        key = f" {self.path}:" if self.path else ""
        hint = f" (did you mean {self.suggestion}?)" if self.suggestion else ""
        return f"{where}:{key} {self.message}{hint}"


class SpecError(Exception):
    """One or more problems in a spec; ``exit_code`` is 3 for unknown parts, else 2."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = list(issues)
        super().__init__("\n".join(map(str, self.issues)))

    @property
    def exit_code(self) -> int:
        return EXIT_UNKNOWN if any(i.unknown_part for i in self.issues) else EXIT_INVALID
