"""Honest comparisons: the paired difference of two models' accuracies on the same items, with a
95% confidence interval, so a change inside the noise is reported as such.

Both models answer the same held-out items, so the comparison is paired: only the discordant items
(right for one, wrong for the other) carry information. With n items, n10 right only for the new
model and n01 right only for the old, the difference is d = (n10 - n01) / n and its standard error
(the Wald interval for paired proportions, as McNemar's test) is

    se = sqrt(n10 + n01 - (n10 - n01)^2 / n) / n,    95% CI = d -/+ 1.96 se.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

Z95 = 1.959963984540054


@dataclass(frozen=True)
class PairedDifference:
    difference: float  # new accuracy - old accuracy, on the same items
    low: float  # 95% interval
    high: float
    items: int
    new_only: int  # right for the new model only (n10)
    old_only: int  # right for the old model only (n01)

    @property
    def significant(self) -> bool:
        """Does the 95% interval exclude zero?"""
        return self.low > 0 or self.high < 0

    def describe(self) -> str:
        word = "above" if self.low > 0 else "below" if self.high < 0 else "within noise of"
        return f"{self.difference:+.3f} [{self.low:+.3f}, {self.high:+.3f}] ({word} zero, n={self.items})"


def paired_difference(old: dict[str, bool], new: dict[str, bool]) -> PairedDifference | None:
    """new - old accuracy over the items both answered (keys: item ids); None without common items.

    >>> old = {f"q{i}": i < 30 for i in range(100)}  # right on items 0-29
    >>> new = {f"q{i}": 5 <= i < 40 for i in range(100)}  # right on items 5-39
    >>> d = paired_difference(old, new)
    >>> (round(d.difference, 4), d.new_only, d.old_only, round(d.low, 4), round(d.high, 4))
    (0.05, 10, 5, -0.0253, 0.1253)
    """
    items = sorted(set(old) & set(new))
    if not items:
        return None
    n = len(items)
    new_only = sum(1 for i in items if new[i] and not old[i])
    old_only = sum(1 for i in items if old[i] and not new[i])
    difference = (new_only - old_only) / n
    se = math.sqrt(max(new_only + old_only - (new_only - old_only) ** 2 / n, 0.0)) / n
    return PairedDifference(difference, difference - Z95 * se, difference + Z95 * se, n, new_only, old_only)


def auc_interval(value: float, right: int, wrong: int) -> tuple[float, float]:
    """95% interval of an AUC over `right` positive and `wrong` negative items (Hanley & McNeil 1982).

    With A the AUC, Q1 = A / (2 - A) and Q2 = 2 A^2 / (1 + A),
        se^2 = (A (1 - A) + (right - 1)(Q1 - A^2) + (wrong - 1)(Q2 - A^2)) / (right * wrong),
    clipped to [0, 1]. A probe of 100 answers with 26 right reads an AUC of 0.70 as 0.70 +/- 0.12.

    >>> [round(x, 4) for x in auc_interval(0.7, 26, 74)]
    [0.5757, 0.8243]
    """
    q1, q2 = value / (2 - value), 2 * value ** 2 / (1 + value)
    variance = (value * (1 - value) + (right - 1) * (q1 - value ** 2)
                + (wrong - 1) * (q2 - value ** 2)) / (right * wrong)
    se = math.sqrt(max(variance, 0.0))
    return max(0.0, value - Z95 * se), min(1.0, value + Z95 * se)
