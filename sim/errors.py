"""User errors: bad input that the command line reports in one line, without a traceback."""
from __future__ import annotations


class CowsimError(Exception):
    """An error in what the user asked for. ``str()`` is the whole message."""

    exit_code = 2


class ScenarioError(CowsimError):
    """A scenario that cannot be run: ``FILE:LINE: field.path: what is wrong``."""

    def __init__(self, message: str, *, file: str = "<scenario>", line: int | None = None, field: str = ""):
        self.file, self.line, self.field, self.message = file, line, field, message
        where = file if line is None else f"{file}:{line}"
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
