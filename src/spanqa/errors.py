"""The one exception type users see.

Anything raised as `SpanqaError` is a problem with the user's input or environment; the CLI prints its
message as one paragraph and exits with status 2, no traceback. Everything else is a bug in spanqa.
"""


class SpanqaError(Exception):
    """A user-facing error: the message names the file, line or field and what was expected."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when the message is empty: what an error that
    wraps a library's exception quotes of it."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
