"""argparse types shared by every command's parser (edge.cli and edge.ingest.cli): a bad value is a usage error, exit 2."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


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


def output_file(text: str) -> str:
    """argparse type for --out, --objects-out: '-', or a file name the file system can hold in a folder that exists, checked
    before the model loads (a usage error, exit 2, not a failure after the run)."""
    if text == "-":
        return text
    path = Path(text)
    try:
        limit = os.pathconf(path.parent, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255  # what Linux file systems allow
    size = len(os.fsencode(path.name))
    if size > limit:  # before any stat of the path itself, which would fail with ENAMETOOLONG
        raise argparse.ArgumentTypeError(f"file name of {size} bytes: the file system allows at most {limit}")
    try:
        if not text or path.is_dir():
            raise argparse.ArgumentTypeError(f"{text!r} is not a file name")
        if not path.parent.is_dir():
            raise argparse.ArgumentTypeError(f"{text}: folder {path.parent} does not exist")
    except OSError as exc:  # a folder name too long, a path too long
        raise argparse.ArgumentTypeError(f"{text}: {exc.strerror or exc}") from None
    return text
