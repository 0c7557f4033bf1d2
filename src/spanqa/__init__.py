"""spanqa: extractive question answering, from data to served reader."""

from spanqa.errors import SpanqaError

__version__ = "0.1.0"
__all__ = ["SpanqaError", "__version__"]
