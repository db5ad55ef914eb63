"""Prometheus text exposition format (what node_exporter's textfile collector reads): gauges, counters, histograms."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

METRIC_PREFIX = "edge_"


@dataclass(frozen=True)
class Metric:
    value: float | int | bool
    help: str = ""
    type: Literal["gauge", "counter"] = "gauge"
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram sample set: cumulative `le` buckets (upper bound, count ≤ it), then +Inf = count."""

    buckets: Sequence[Sequence[float]]
    count: int
    sum: float
    help: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    type: Literal["histogram"] = "histogram"


_NAME_BAD = re.compile(r"[^a-zA-Z0-9_:]")


def metric_name(name: str) -> str:
    """`edge_` + name with invalid characters replaced by `_` (the prefix is not doubled)."""
    clean = _NAME_BAD.sub("_", name)
    return clean if clean.startswith(METRIC_PREFIX) else METRIC_PREFIX + clean


def _label_value(v: str) -> str:
    return str(v).replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _value(v: float | int | bool) -> str:
    f = float(v)
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    return repr(int(f)) if f.is_integer() and abs(f) < 2**53 else repr(f)


def render_prometheus(metrics: Mapping[str, float | int | bool | Metric | Sequence[Metric] | None]) -> str:
    """Text exposition format: `# HELP`, `# TYPE`, then one sample line per label set. None values are left out."""
    out: list[str] = []
    for raw_name, value in sorted(metrics.items()):
        samples = [value] if not isinstance(value, Sequence) else list(value)
        samples = [s if isinstance(s, (Metric, Histogram)) else Metric(s) for s in samples if s is not None]
        samples = [s for s in samples if isinstance(s, Histogram) or s.value is not None]
        if not samples:
            continue
        name = metric_name(raw_name)
        help_text = next((s.help for s in samples if s.help), name.replace("_", " "))
        out.append(f"# HELP {name} {help_text.replace(chr(92), chr(92) * 2).replace(chr(10), chr(92) + 'n')}")
        out.append(f"# TYPE {name} {samples[0].type}")
        for s in samples:
            if isinstance(s, Histogram):
                out.extend(_histogram_lines(name, s))
                continue
            labels = _labels(s.labels)
            out.append(f"{name}{{{labels}}} {_value(s.value)}" if labels else f"{name} {_value(s.value)}")
    return "\n".join(out) + "\n"


def _labels(labels: Mapping[str, str]) -> str:
    return ",".join(f'{_NAME_BAD.sub("_", k)}="{_label_value(v)}"' for k, v in sorted(labels.items()))


def _histogram_lines(name: str, h: Histogram) -> list[str]:
    """name_bucket{…,le="…"} for each bound and +Inf, then name_sum and name_count."""
    base = _labels(h.labels)
    sep = "," if base else ""
    lines = [f'{name}_bucket{{{base}{sep}le="{float(le):g}"}} {_value(n)}' for le, n in h.buckets]
    lines.append(f'{name}_bucket{{{base}{sep}le="+Inf"}} {_value(h.count)}')
    tail = f"{{{base}}}" if base else ""
    return lines + [f"{name}_sum{tail} {_value(h.sum)}", f"{name}_count{tail} {_value(h.count)}"]
