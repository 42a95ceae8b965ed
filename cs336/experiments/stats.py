"""How sure a comparison over seeds is: mean ± spread, and a paired t-test.

Two conditions run with the same seeds see the same batches in the same order, so the runs pair up
by seed; the paired t-test asks whether the mean of the per-seed differences is far from zero
given how much those differences vary. With three seeds it has two degrees of freedom, so only a
difference several times its own spread comes out significant.

>>> r = paired_t_test([4.10, 4.20, 4.15], [4.40, 4.52, 4.43])
>>> round(r.mean_diff, 3), round(r.t, 2), r.df, round(r.p, 4)
(0.3, 25.98, 2, 0.0015)
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from cs336.errors import CS336Error


@dataclass(frozen=True)
class PairedTest:
    mean_diff: float  # mean of b - a over the pairs
    sd_diff: float  # their standard deviation (n - 1 in the denominator)
    t: float
    df: int
    p: float  # two-sided


def paired_t_test(a: Sequence[float], b: Sequence[float]) -> PairedTest:
    """Student's paired t-test of `b` against `a` (pairs in order, e.g. by seed); two-sided p."""
    if len(a) != len(b) or len(a) < 2:
        raise CS336Error(f"a paired t-test needs two equally long samples of at least 2, got {len(a)} and {len(b)}")
    diffs = [y - x for x, y in zip(a, b)]
    mean, sd, n = statistics.fmean(diffs), statistics.stdev(diffs), len(diffs)
    if sd == 0:
        return PairedTest(mean, 0.0, math.copysign(math.inf, mean) if mean else 0.0, n - 1, 0.0 if mean else 1.0)
    t = mean / (sd / math.sqrt(n))
    return PairedTest(mean, sd, t, n - 1, student_t_two_sided_p(t, n - 1))


def student_t_two_sided_p(t: float, df: float) -> float:
    """P(|T| ≥ |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t²)}(df/2, 1/2)."""
    return regularized_incomplete_beta(df / 2, 0.5, df / (df + t * t))


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), by its continued fraction (modified Lentz), on the side where it converges fast."""
    if x <= 0:
        return 0.0
    if x >= 1:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1) / (a + b + 2):
        return front * _continued_fraction(a, b, x) / a
    return 1 - front * _continued_fraction(b, a, 1 - x) / b


def _continued_fraction(a: float, b: float, x: float, *, steps: int = 300, eps: float = 1e-15) -> float:
    tiny = 1e-300

    def clamp(v: float) -> float:
        return v if abs(v) > tiny else tiny

    c, d = 1.0, 1 / clamp(1 - (a + b) * x / (a + 1))
    h = d
    for m in range(1, steps + 1):
        for coeff in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                      -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1 / clamp(1 + coeff * d)
            c = clamp(1 + coeff / c)
            h *= d * c
        if abs(d * c - 1) < eps:
            return h
    return h
