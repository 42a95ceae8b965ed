"""The paired t-test against closed forms of Student's t and a normal limit."""

from __future__ import annotations

import math
import random
import statistics

import pytest

from cs336.errors import CS336Error
from cs336.experiments.stats import paired_t_test, regularized_incomplete_beta, student_t_two_sided_p


@pytest.mark.parametrize("t", [0.0, 0.3, 1.0, 2.5, 12.7, 80.0])
def test_p_equals_the_closed_forms_for_one_and_two_degrees_of_freedom(t):
    assert student_t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)  # Cauchy
    assert student_t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(t * t + 2), abs=1e-12)


def test_many_degrees_of_freedom_approach_the_normal():
    for z in (1.0, 1.959963984540054, 3.0):
        normal = math.erfc(z / math.sqrt(2))
        assert student_t_two_sided_p(z, 1e7) == pytest.approx(normal, rel=1e-5)


def test_incomplete_beta_against_its_symmetry_and_a_polynomial_case():
    for x in (0.01, 0.3, 0.5, 0.77, 0.999):
        assert regularized_incomplete_beta(2.5, 4.0, x) + regularized_incomplete_beta(4.0, 2.5, 1 - x) == pytest.approx(1, abs=1e-12)
        assert regularized_incomplete_beta(2, 1, x) == pytest.approx(x * x, abs=1e-12)  # I_x(a, 1) = x^a


def test_paired_test_by_hand_and_its_edges():
    a, b = [4.10, 4.20, 4.15], [4.40, 4.52, 4.43]
    r = paired_t_test(a, b)
    diffs = [0.30, 0.32, 0.28]
    assert r.mean_diff == pytest.approx(statistics.fmean(diffs)) and r.sd_diff == pytest.approx(statistics.stdev(diffs))
    assert r.t == pytest.approx(0.30 / (0.02 / math.sqrt(3))) and r.df == 2 and r.p < 0.01
    assert paired_t_test(a, a).p == 1.0 and paired_t_test(a, [x + 0.1 for x in a]).p == 0.0  # no spread
    with pytest.raises(CS336Error, match="at least 2"):
        paired_t_test([1.0], [2.0])


def test_p_values_are_uniform_under_the_null():
    """Differences drawn from one normal: p < 0.05 about 5% of the time."""
    rng = random.Random(0)
    hits = sum(paired_t_test([0.0] * 5, [rng.gauss(0, 1) for _ in range(5)]).p < 0.05 for _ in range(4000))
    assert 0.04 < hits / 4000 < 0.06
