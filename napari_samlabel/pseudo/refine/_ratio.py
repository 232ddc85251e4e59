"""Exact ratio comparisons for the refiners' thresholds.

``o / a > 0.85`` in floating point can go either way when ``o / a`` is exactly 0.85 (17 of
20 pixels). The thresholds are compared as fractions of integers instead, so a ratio equal
to the threshold is decided the same way on every machine.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def as_fraction(threshold: float, name: str) -> Fraction:
    """The rational number closest to ``threshold`` (denominator at most 10**6)."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {threshold}")
    return Fraction(threshold).limit_denominator(10**6)


def ratio_above(num: np.ndarray, den: np.ndarray, threshold: Fraction) -> np.ndarray:
    """``num / den > threshold`` element-wise, exactly, for integer arrays; False where den = 0."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    return (num * threshold.denominator > den * threshold.numerator) & (den > 0)


def ratio_below(num: np.ndarray, den: np.ndarray, threshold: Fraction) -> np.ndarray:
    """``num / den < threshold`` element-wise, exactly, for integer arrays; False where den = 0."""
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    return (num * threshold.denominator < den * threshold.numerator) & (den > 0)
