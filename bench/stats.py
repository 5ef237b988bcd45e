"""Small statistics helpers: medians, percentiles and ratios that tolerate missing data."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

__all__ = ["median", "percentile", "ratio"]


def percentile(values: Sequence[float], q: float) -> float:
    """The `q`-th percentile (nearest rank, 0 < q <= 100), or NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: Sequence[float]) -> float:
    """The median, or NaN for no values."""
    finite = [v for v in values if not math.isnan(v)]
    return statistics.median(finite) if finite else math.nan


def ratio(numerator: float | None, denominator: float | None) -> float:
    """`numerator / denominator`, NaN when either is missing (None or NaN) or the
    denominator is 0."""
    if numerator is None or denominator is None:
        return math.nan
    if math.isnan(numerator) or math.isnan(denominator) or denominator == 0:
        return math.nan
    return numerator / denominator
