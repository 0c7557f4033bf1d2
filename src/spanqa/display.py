"""Showing things to people: answers with the context highlighted, and durations as the seeds write them."""

from __future__ import annotations

import textwrap

BOLD_YELLOW, RESET = "\033[1;30;43m", "\033[0m"


def highlight(context: str, start: int, end: int, color: bool, width: int = 100, window: int = 300) -> str:
    """The part of `context` around [start, end), the answer marked with colour or [[brackets]]."""
    if start < 0:
        return textwrap.fill(context[:window] + ("..." if len(context) > window else ""), width)
    lo, hi = max(0, start - window // 2), min(len(context), end + window // 2)
    open_, close = (BOLD_YELLOW, RESET) if color else ("[[", "]]")
    marker_open, marker_close = "\x00", "\x01"  # keep the marks intact through wrapping
    text = context[lo:start] + marker_open + context[start:end] + marker_close + context[end:hi]
    wrapped = textwrap.fill(text, width)
    wrapped = wrapped.replace(marker_open, open_).replace(marker_close, close)
    return ("..." if lo else "") + wrapped + ("..." if hi < len(context) else "")


def answers_table(answers) -> str:
    """One line per answer: rank, text, score, probability."""
    lines = []
    for rank, a in enumerate(answers, start=1):
        text = "(no answer)" if a.is_no_answer else repr(a.text)
        lines.append(f"{rank:>2}. {text}  score {a.score:.3f}  p {a.probability:.3f}  "
                     f"no-answer p {a.no_answer_probability:.3f}")
    return "\n".join(lines)


def hms(seconds: float) -> str:
    """0:02:14.50 — the seeds' runtime format."""
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}:{minutes:02d}:{secs:05.2f}"
