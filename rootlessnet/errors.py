"""Errors shared by the whole package.

`UserError` is a mistake the person at the keyboard can fix: the CLI prints
its message as one line (no traceback) and exits non-zero. Everything else is
a bug or an environment failure and keeps its traceback.
"""


class UserError(Exception):
    """A one-line, user-fixable error. `str(e)` says what is wrong and how to fix it."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code
