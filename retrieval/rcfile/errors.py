"""The one exception the rcfile package raises for a file it cannot accept."""

from __future__ import annotations


class RcfileError(Exception):
    """A syntax or semantic error in an rcfile.

    ``line`` and ``column`` are 1-based and point at the offending token (or at the
    entry a load-time check refused); ``token`` is the text of that token as
    written, ``None`` at the end of the input or when no single token is to blame.
    """

    def __init__(
        self,
        filename: str,
        line: int,
        message: str,
        *,
        column: int | None = None,
        token: str | None = None,
    ) -> None:
        self.filename = filename
        self.line = line
        self.column = column
        self.token = token
        self.message = message
        super().__init__(self.render())

    def render(self) -> str:
        where = f"{self.filename}:{self.line}:"
        if self.column is not None:
            where += f"{self.column}:"
        text = f"{where} {self.message}"
        if self.token is not None:
            shown = self.token if len(self.token) <= 60 else self.token[:57] + "..."
            text += f" at {shown!r}"
        return text

    def __reduce__(self) -> tuple[object, ...]:  # keep pickling/copying working
        return (
            _rebuild,
            (self.filename, self.line, self.message, self.column, self.token),
        )


def _rebuild(
    filename: str, line: int, message: str, column: int | None, token: str | None
) -> RcfileError:
    return RcfileError(filename, line, message, column=column, token=token)
