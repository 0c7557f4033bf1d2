"""The one exception type users see.

Anything raised as `SpanqaError` is a problem with the user's input or environment; the CLI prints its
message as one paragraph and exits with status 2, no traceback. Everything else is a bug in spanqa.
"""


class SpanqaError(Exception):
    """A user-facing error: the message names the file, line or field and what was expected."""
