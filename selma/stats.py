"""Confidence intervals over prompts: percentile bootstrap (scipy) and paired differences."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

DEFAULT_RESAMPLES = 2000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap confidence interval."""

    mean: float
    low: float
    high: float

    def as_list(self) -> list[float]:
        """``[low, high]`` for JSON."""
        return [self.low, self.high]


def bootstrap_mean(values: Sequence[float], *, seed: int, n_resamples: int = DEFAULT_RESAMPLES) -> Interval:
    """Mean of ``values`` with a 95 % percentile-bootstrap interval (resampling prompts)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    mean = float(data.mean())
    if data.size < 2 or np.all(data == data[0]):
        return Interval(mean, mean, mean)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (data,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=n_resamples,
            method="percentile",
            rng=np.random.default_rng(seed),
        )
    return Interval(mean, float(result.confidence_interval.low), float(result.confidence_interval.high))


def bootstrap_ratio(
    numerators: Sequence[float], denominators: Sequence[float], *, seed: int, n_resamples: int = DEFAULT_RESAMPLES
) -> Interval:
    """sum(numerators) / sum(denominators) with a 95 % percentile-bootstrap interval, resampling
    the (numerator, denominator) pairs: a micro average over questions, resampled by prompt.
    """
    num, den = np.asarray(numerators, dtype=float), np.asarray(denominators, dtype=float)
    if num.size == 0 or den.sum() == 0:
        return Interval(float("nan"), float("nan"), float("nan"))
    value = float(num.sum() / den.sum())
    if num.size < 2:
        return Interval(value, value, value)
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, num.size, size=(n_resamples, num.size))
    totals = den[picks].sum(axis=1)
    ratios = num[picks].sum(axis=1)[totals > 0] / totals[totals > 0]
    low, high = np.percentile(ratios, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return Interval(value, float(low), float(high))


def group_intervals(
    records: Iterable[Mapping[str, Any]],
    key: str,
    value: str,
    *,
    seed: int,
    n_resamples: int = DEFAULT_RESAMPLES,
    scale: float = 1.0,
    missing: str | None = None,
) -> dict[str, Interval]:
    """The mean of ``value`` (times ``scale``) per group of ``key``, with its bootstrap interval, groups in
    first-seen order; records without a ``key`` go to group ``missing``, or are left out when it is ``None``.
    """
    groups: dict[str, list[float]] = {}
    for record in records:
        group = record.get(key) or missing
        if group is not None:
            groups.setdefault(group, []).append(scale * record[value])
    return {k: bootstrap_mean(v, seed=seed, n_resamples=n_resamples) for k, v in groups.items()}


@dataclass(frozen=True)
class PairedDifference:
    """Mean of per-prompt differences B − A, its interval and a two-sided bootstrap p-value."""

    interval: Interval
    p_value: float
    n: int


def paired_bootstrap(
    a: Sequence[float], b: Sequence[float], *, seed: int, n_resamples: int = DEFAULT_RESAMPLES
) -> PairedDifference:
    """Paired bootstrap of mean(b − a) over the same prompts.

    The p-value is the two-sided share of resampled mean differences on the other side of 0,
    doubled and capped at 1 (the percentile-bootstrap test).
    """
    diff = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    interval = bootstrap_mean(diff, seed=seed, n_resamples=n_resamples)
    if diff.size < 2 or np.all(diff == diff[0]):
        p_value = 1.0 if diff.size == 0 or diff[0] == 0 else 0.0
        return PairedDifference(interval, p_value, int(diff.size))
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(n_resamples, diff.size))].mean(axis=1)
    tail = min((means <= 0).mean(), (means >= 0).mean())
    return PairedDifference(interval, float(min(1.0, 2 * tail)), int(diff.size))
