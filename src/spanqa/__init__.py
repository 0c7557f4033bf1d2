"""spanqa: extractive question answering, from data to served reader."""

from spanqa.errors import SpanqaError

__version__ = "0.1.0"
__all__ = ["Reader", "SpanqaError", "__version__"]


def __getattr__(name: str):
    if name == "Reader":  # imported on first use: `import spanqa` stays light (no torch)
        from spanqa.reader import Reader

        return Reader
    raise AttributeError(f"module 'spanqa' has no attribute {name!r}")
