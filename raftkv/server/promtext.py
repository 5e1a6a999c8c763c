"""Prometheus's text format as etcd's Go client writes it (client_golang's expfmt).

Two things differ from prometheus-client's own writer and show to a scraper: numbers are Go's
``strconv.FormatFloat(v, 'g', -1, 64)`` (``1`` not ``1.0``, ``2.147483648e+09``, ``1e-05``),
and metric families come sorted by name (Go's registry gathers them sorted). Samples within a
family keep their order, except that a histogram's ``_sum`` comes before its ``_count`` (after
the buckets), as Go writes them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from decimal import Decimal

from prometheus_client.core import Metric

__all__ = ["go_float", "text_format"]

_HISTOGRAM_ORDER = {"_bucket": 0, "_sum": 1, "_count": 2}  # (a stable sort: buckets in order)
_TYPES = {"counter": "counter", "gauge": "gauge", "histogram": "histogram", "summary": "summary"}


def go_float(v: float) -> str:
    """``v`` as Go's FormatFloat(v, 'g', -1, 64): the shortest digits that read back as ``v``,
    in %e form when the exponent is below -4 or at least 6 (Go's rule for the shortest form)."""
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if v == 0:
        return "-0" if math.copysign(1.0, v) < 0 else "0"
    sign, digit_tuple, exp = Decimal(repr(v)).normalize().as_tuple()
    digits = "".join(map(str, digit_tuple))
    neg = "-" if sign else ""
    nd = len(digits)
    x = nd + int(exp) - 1  # the exponent of the first digit
    if x < -4 or x >= 6:
        mantissa = digits[0] + ("." + digits[1:] if nd > 1 else "")
        return f"{neg}{mantissa}e{'+' if x >= 0 else '-'}{abs(x):02d}"
    if x < 0:
        return f"{neg}0.{'0' * (-x - 1)}{digits}"
    if nd <= x + 1:
        return neg + digits + "0" * (x + 1 - nd)
    return f"{neg}{digits[: x + 1]}.{digits[x + 1 :]}"


def _escape_help(s: str) -> str:
    return s.replace("\\", r"\\").replace("\n", r"\n")


def _escape_label(s: str) -> str:
    return s.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def text_format(families: Iterable[Metric]) -> bytes:
    """The text exposition (format 0.0.4) of ``families``."""
    named = []
    for fam in families:
        name = fam.name + "_total" if fam.type == "counter" else fam.name
        named.append((name, fam))
    out: list[str] = []
    for name, fam in sorted(named, key=lambda t: t[0]):
        out.append(f"# HELP {name} {_escape_help(fam.documentation)}\n")
        out.append(f"# TYPE {name} {_TYPES.get(fam.type, 'untyped')}\n")
        samples = [s for s in fam.samples if not s.name.endswith("_created")]
        if fam.type == "histogram":
            samples.sort(key=lambda s: _HISTOGRAM_ORDER.get(s.name[len(fam.name) :], 0))
        for s in samples:
            labels = ""
            if s.labels:
                pairs = ",".join(f'{k}="{_escape_label(v)}"' for k, v in s.labels.items())
                labels = "{" + pairs + "}"
            out.append(f"{s.name}{labels} {go_float(s.value)}\n")
    return "".join(out).encode()
