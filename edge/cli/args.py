"""argparse types shared by every command's parser (edge.cli and edge.ingest.cli): a bad value is a usage error, exit 2."""

from __future__ import annotations

import argparse
import math


def finite_float(text: str) -> float:
    """A finite number (nan or inf is no offset)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"not a finite number: {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds > 0."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds: {text!r}")
    return value
