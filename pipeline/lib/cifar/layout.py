"""The official CIFAR-10 python archive's layout and the per-batch image limit, and how a value read from
the archive appears in an error line (quoted, cut short, never the repr of a large value)."""

from __future__ import annotations

FOLDER = "cifar-10-batches-py"
TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_BATCH = "test_batch"
META = "batches.meta"
README = "readme.html"  # in the official archive; skipped, but its bytes count against the budget
NUM_CLASSES = 10
ROW_BYTES = 3072
MAX_IMAGES = 10_000  # per batch, as in the official archive


def shown(text: str, quote: bool = False, limit: int = 120) -> str:
    """Text from the input as it may appear in an error line: quoted and escaped when asked or when it
    holds anything unprintable (a line break would split the one error line), cut short when long."""
    shown = repr(text) if quote or not text.isprintable() else text
    return shown if len(shown) <= limit else shown[:limit - 30] + f"... ({len(text):,} characters)"


def describe(value, depth: int = 0) -> str:
    """A short description for an error line, never the repr of a large value; tuples are opened two
    levels deep at most, so a deeply nested one cannot exhaust the recursion limit."""
    if type(value) in (dict, list, tuple) and value:
        inner = ", ".join(describe(v, depth + 1) for v in value[:3]) if type(value) is tuple and depth < 2 else None
        if inner:
            return f"({inner}{',' if len(value) == 1 else ', ...' if len(value) > 3 else ''})"
        return f"a {type(value).__name__} of {len(value):,} item{'s' if len(value) > 1 else ''}"
    if isinstance(value, (bytes, str)) and len(value) > 20:
        return f"{type(value).__name__} of length {len(value):,}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
