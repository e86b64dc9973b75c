"""Timing statistics shared by every measurement: median and interquartile range of step times."""

from __future__ import annotations

import numpy as np


def spread(times_ms) -> dict:
    """`step_time_ms_median` and `step_time_ms_iqr` of a list of step times in ms (NaN when empty)."""
    q25, q50, q75 = np.percentile(times_ms, [25, 50, 75]) if len(times_ms) else (np.nan,) * 3
    return {"step_time_ms_median": round(float(q50), 3), "step_time_ms_iqr": round(float(q75 - q25), 3)}
