"""argparse types shared by the project's command lines (one rule, one message)."""
from __future__ import annotations

import argparse
from typing import Callable


def int_at_least(least: int, meaning: str = "") -> Callable[[str], int]:
    """argparse type: an integer >= ``least``; ``meaning`` (e.g. ``"0: all images"``) is named in
    the message, which argparse prefixes with the option (``argument --limit: must be >= 0 (0: all
    images), got -1``)."""
    said = f" ({meaning})" if meaning else ""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be >= {least}{said}, got {value}")
        return value

    parse.__name__ = f"integer >= {least}"   # argparse's 'invalid <type> value' names it so
    return parse
