"""The one exception type for problems a user can fix.

Every error a user can cause (bad YAML, an unknown level, a rank larger than the channels,
a missing tool) is raised as :class:`HalocError`. Its message names the file, the key and
the fix, so the CLI can print it as one line and exit non-zero without a traceback.
"""

from __future__ import annotations

from pathlib import Path


class HalocError(Exception):
    """A user-fixable error: ``str(err)`` is a complete one-line explanation."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        key: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.message = message
        self.file = None if file is None else str(file)
        self.key = key
        self.fix = fix
        super().__init__(self._render())

    def _render(self) -> str:
        where = []
        if self.file:
            where.append(self.file)
        if self.key:
            where.append(f"key '{self.key}'")
        text = f"{': '.join(where)}: {self.message}" if where else self.message
        if self.fix:
            text += f" (fix: {self.fix})"
        return text
