"""pipeline.search.pruning: the rule on hand-made validation curves (what xgboost reports per round).

The comparison at equal learning progress and over folds is tested with the rule reduced to a median of
best-so-far values (``median``); the optimistic bound, the quantile and the stall stop on their own."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.search.pruning import PruningRule, Stop


def median(startup_trials: int, warmup_rounds: int) -> PruningRule:
    """The rule as a plain median rule: best so far against the median, no bound, no stall stop."""
    return PruningRule(startup_trials, warmup_rounds, quantile=0.5, fall_margin=0.0, stall_rounds=None)


FALLING = [[10.0, 8.0, 6.0, 5.0, 4.0], [10.0, 9.0, 7.0, 6.0, 5.0], [10.0, 7.0, 5.0, 4.0, 3.0]]
"""Three completed rmse curves: the median of their running best is 10, 8, 6, 5, 4."""


def replay(check, curve):
    """The first round at which the check stops the curve, or None when it runs to the end."""
    return next((round_ for round_, value in enumerate(curve) if check(round_, value)), None)


def test_no_check_until_enough_trials_completed():
    rule = median(startup_trials=4, warmup_rounds=0)
    assert rule.checker(FALLING, "rmse") is None
    assert rule.checker([*FALLING, []], "rmse") is None, "a trial with no curve does not count"
    assert rule.checker([*FALLING, FALLING[0]], "rmse") is not None


def test_a_curve_worse_than_the_median_stops_at_the_first_round_after_warmup():
    rule = median(startup_trials=3, warmup_rounds=2)
    assert replay(rule.checker(FALLING, "rmse"), [10.0, 9.0, 8.0, 7.0, 6.0]) == 2


def test_a_curve_at_or_better_than_the_median_is_never_stopped():
    rule = median(startup_trials=3, warmup_rounds=0)
    assert replay(rule.checker(FALLING, "rmse"), [10.0, 8.0, 6.0, 5.0, 4.0]) is None
    assert replay(rule.checker(FALLING, "rmse"), [9.0, 7.0, 5.0, 4.0, 3.0, 2.0, 1.0]) is None


def test_the_best_so_far_is_compared_not_the_latest_value():
    """A curve that bounces up after a good round is judged by its best round, as early stopping would."""
    rule = median(startup_trials=3, warmup_rounds=0)
    assert replay(rule.checker(FALLING, "rmse"), [10.0, 6.0, 9.0, 9.0, 9.0]) == 3  # best 6 vs medians 8, 6, then 5


def test_completed_curves_that_stopped_early_count_with_their_final_best():
    short = [[10.0, 4.0], [10.0, 4.0], [10.0, 20.0, 30.0, 30.0, 30.0, 30.0]]
    rule = median(startup_trials=3, warmup_rounds=0)
    # median of running bests from round 1 on: 4 (the two short curves carried forward at 4)
    assert replay(rule.checker(short, "rmse"), [10.0, 5.0, 5.0]) == 1
    assert replay(rule.checker(short, "rmse"), [10.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]) is None


def test_rounds_past_the_longest_completed_curve_use_its_last_median():
    rule = median(startup_trials=3, warmup_rounds=0)
    check = rule.checker(FALLING, "rmse")
    assert replay(check, [10.0, 8.0, 6.0, 5.0, 4.0, 4.0, 4.0, 4.5]) is None
    check = rule.checker(FALLING, "rmse")
    assert replay(check, [10.0, 8.0, 6.0, 5.0, 4.0]) is None
    assert check(7, 4.5) is None, "its best so far (4.0) still equals the last median"


@pytest.mark.parametrize("metric", ["auc", "aucpr", "map"])
def test_a_maximised_curve_is_pruned_when_it_is_below_the_median(metric):
    completed = [[0.5, 0.6, 0.7], [0.5, 0.7, 0.8], [0.5, 0.65, 0.75]]
    rule = median(startup_trials=3, warmup_rounds=1)
    assert replay(rule.checker(completed, metric), [0.5, 0.55, 0.6]) == 1
    assert replay(rule.checker(completed, metric), [0.5, 0.7, 0.8]) is None


def test_without_an_early_stopping_metric_there_is_nothing_to_compare():
    assert median(startup_trials=1, warmup_rounds=0).checker(FALLING, None) is None


# --- equal learning progress: rounds times the learning rate ----------------------------------------------

FAST = [[10.0, 5.0, 4.0, 3.0, 3.0, 3.0]] * 3
"""Three completed trials at rate 0.5: their running best is 10, 5, 4, 3 after 1..4 rounds."""
SLOW = [10.0, 9.0, 8.0, 7.0, 6.0, 5.0, 4.6, 4.3, 3.9, 3.5, 3.2, 2.9]
"""A trial at rate 0.1: five of its rounds make the progress of one of FAST's, and it ends better (2.9)."""


def test_a_slow_learner_is_compared_where_the_fast_ones_had_made_as_much_progress():
    rule = median(startup_trials=3, warmup_rounds=2)
    assert replay(rule.checker(FAST, "rmse"), SLOW) == 2, "round for round it trails, and is cut"
    slow = rule.checker(FAST, "rmse", rates=[0.5] * 3, rate=0.1)
    assert replay(slow, SLOW) is None, "after 5 rounds it stands at 6 where the fast ones stood at 10"


def test_a_slow_learner_still_worse_at_equal_progress_is_cut():
    rule = median(startup_trials=3, warmup_rounds=2)
    stuck = [10.0] * 8 + [9.0] * 4
    # after 10 rounds (progress 1.0, the fast trials' round 2: 5.0) its best (9.0) is worse
    assert replay(rule.checker(FAST, "rmse", rates=[0.5] * 3, rate=0.1), stuck) == 9


def test_a_fast_learner_past_the_slow_ones_ends_is_held_to_their_final_best():
    rule = median(startup_trials=3, warmup_rounds=1)
    slow = [SLOW] * 3  # rate 0.1: final best 2.9
    fast = rule.checker(slow, "rmse", rates=[0.1] * 3, rate=0.5)
    assert replay(fast, [10.0, 6.0, 4.0, 3.0]) == 1, "after 2 rounds (10 of theirs) 6.0 trails their 3.5"
    fast = rule.checker(slow, "rmse", rates=[0.1] * 3, rate=0.5)
    assert replay(fast, [10.0, 3.4, 2.8, 2.7]) is None, "from round 2 on (past their end) 2.8 beats their 2.9"


def test_equal_rates_compare_round_for_round_as_without_rates():
    rule = median(startup_trials=3, warmup_rounds=0)
    curve = [10.0, 6.0, 9.0, 9.0, 9.0]
    assert replay(rule.checker(FALLING, "rmse", rates=[0.05] * 3, rate=0.05), curve) == replay(
        rule.checker(FALLING, "rmse"), curve
    )


def test_folds_are_compared_at_equal_progress_too():
    rule = median(startup_trials=3, warmup_rounds=2)
    completed = [[c, c] for c in FAST]
    slightly_worse = SLOW[:-1]  # ends at 3.2, above the fast trials' 3.0: one strike
    folds = [slightly_worse, slightly_worse]
    assert run_folds(rule.over_folds(completed, "rmse", 2, rates=[0.5] * 3, rate=0.1), folds) is None
    assert run_folds(rule.over_folds(completed, "rmse", 2), folds) == (1, 2)


# --- k-fold cross-validation: each fold against that fold's history, never cut on one bad fold -------------

HARD, EASY = [[20.0, 16.0, 12.0, 10.0, 8.0]] * 3, FALLING
"""Three completed trials over two folds: fold 0 is hard for every trial (median 20 ... 8), fold 1 easy."""
COMPLETED = [[HARD[i], EASY[i]] for i in range(3)]


def run_folds(pruning, folds):
    """Fold by fold, as a trial does: the fold and round it was stopped at, or None when it ran every fold."""
    for fold, curve in enumerate(folds):
        if (stopped := replay(pruning.check(fold), curve)) is not None:
            return fold, stopped
        pruning.finished(fold, curve)
    return None


def test_a_fold_is_compared_with_the_same_fold_of_the_completed_trials():
    rule = median(startup_trials=3, warmup_rounds=0)
    as_good = [HARD[0], EASY[0]]
    assert run_folds(rule.over_folds(COMPLETED, "rmse", 2), as_good) is None
    assert replay(rule.checker(FALLING, "rmse"), as_good[0]) == 0, "against a mixed history the hard fold looks bad"


def test_one_bad_fold_never_stops_a_trial_whose_other_folds_are_good():
    rule = median(startup_trials=3, warmup_rounds=0)
    completed = [[c, c, c] for c in FALLING]
    first_bad = [[30.0, 29.0, 28.0, 27.0, 26.0], [9.0, 7.0, 5.0, 4.0, 3.0], [9.0, 7.0, 5.0, 4.0, 3.0]]
    last_bad = first_bad[1:] + first_bad[:1]
    for folds in (first_bad, last_bad):
        assert run_folds(rule.over_folds(completed, "rmse", 3), folds) is None
    assert replay(rule.checker(FALLING, "rmse"), first_bad[0]) == 0, "the single-split rule would have cut it"


def test_a_trial_worse_on_two_folds_is_stopped_in_the_second_bad_one_after_warmup():
    rule = median(startup_trials=3, warmup_rounds=2)
    completed = [[c, c, c, c] for c in FALLING]
    bad, good = [10.0, 9.5, 9.0, 8.5, 8.0], [9.0, 7.0, 5.0, 4.0, 3.0]
    assert run_folds(rule.over_folds(completed, "rmse", 4), [bad, bad, good, good]) == (1, 2)
    assert run_folds(rule.over_folds(completed, "rmse", 4), [good, bad, good, bad]) == (3, 2)


def test_a_single_split_is_one_fold_judged_as_before():
    rule = median(startup_trials=3, warmup_rounds=2)
    pruning = rule.over_folds([[c] for c in FALLING], "rmse", 1)
    assert run_folds(pruning, [[10.0, 9.0, 8.0, 7.0, 6.0]]) == (0, 2)


def test_only_completed_trials_with_as_many_folds_count():
    rule = median(startup_trials=3, warmup_rounds=0)
    assert rule.over_folds([[c] for c in FALLING], "rmse", 2) is None, "a single-split curve is no fold's history"
    assert rule.over_folds([*COMPLETED[:2], [HARD[0], []]], "rmse", 2) is None
    assert rule.over_folds(COMPLETED, None, 2) is None


# --- the optimistic bound, the quantile and the stall stop (the rule's defaults) ---------------------------

FLAT = [[10.0, 6.0] + [5.0] * 6, [10.0, 5.0] + [4.0] * 6, [10.0, 7.0] + [6.0] * 6]
"""Three completed trials that flatten after round 2, at 4, 5 and 6: a third of them end at 4.66 or better."""


def bound(**changes) -> PruningRule:
    return PruningRule(**{"startup_trials": 3, "stall_rounds": None} | changes)


def test_the_bound_keeps_a_steep_curve_that_best_so_far_alone_would_cut():
    steep = [10.0, 7.0, 5.5, 4.5, 4.2]
    assert replay(median(3, 0).checker(FLAT, "rmse"), steep) == 1, "7.0 trails the median's 6.0"
    assert replay(bound().checker(FLAT, "rmse"), steep) is None, "7.0, less twice the 3.0 it just gained, does not"


def test_a_flattened_curve_is_judged_by_where_it_stands():
    flattened = [10.0, 7.0, 5.5, 5.3, 5.25, 5.25]
    # round 3: 5.3 less twice its last gain (0.2) is 4.9, behind the best third's 4.66
    assert replay(bound().checker(FLAT, "rmse"), flattened) == 3


def test_the_gain_is_measured_over_one_unit_of_progress():
    """At rate 0.25 a unit of progress is 4 rounds: the gain over the last 4 rounds counts, not the last one."""
    slow = [10.0, 9.0, 8.0, 7.0, 6.0, 5.9, 5.8, 5.7, 5.6]
    at_quarter = bound().checker(FLAT, "rmse", rates=[0.25] * 3, rate=0.25)
    assert replay(at_quarter, slow) == 8, "round 8: 5.6 less twice the 0.4 of its last 4 rounds trails 4.66"
    assert replay(bound().checker(FLAT, "rmse"), slow) == 1, "at rate 1 one round is the unit"


def test_the_quantile_sets_how_good_a_kept_trial_must_look():
    at_the_median = [10.0, 6.0, 5.0, 5.0, 5.0, 5.0]
    assert replay(bound(fall_margin=0.0, quantile=0.5).checker(FLAT, "rmse"), at_the_median) is None
    assert replay(bound(fall_margin=0.0).checker(FLAT, "rmse"), at_the_median) == 1, "not in the best third"


def test_a_trial_behind_the_best_that_stopped_improving_stops_as_stalled():
    rule = bound(quantile=0.9, stall_rounds=3)  # a lax quantile: only the stall stop acts
    behind = [10.0, 6.0, 4.5, 4.5, 4.5, 4.5, 4.5, 4.5]
    check = rule.checker(FLAT, "rmse")
    stops = [check(r, v) for r, v in enumerate(behind)]
    assert stops[:5] == [None] * 5 and stops[5] is Stop.STALLED, "three rounds without gain after round 2"


def test_the_trial_that_leads_the_study_runs_its_full_patience():
    rule = bound(quantile=0.9, stall_rounds=3)
    leading = [10.0, 5.0, 3.9] + [3.9] * 20
    assert replay(rule.checker(FLAT, "rmse"), leading) is None, "3.9 beats the best completed trial's 4.0"


def test_an_equal_value_is_no_improvement():
    rule = bound(quantile=0.9, stall_rounds=2)
    assert replay(rule.checker(FLAT, "rmse"), [10.0, 6.0, 4.5, 4.5, 4.5]) == 4


def test_folds_never_stall():
    rule = bound(quantile=0.9, stall_rounds=2)
    completed = [[c, c] for c in FLAT]
    behind = [10.0, 6.0, 4.5, 4.5, 4.5, 4.5]
    assert replay(rule.over_folds([[c] for c in FLAT], "rmse", 1).check(0), behind) == 4
    assert run_folds(rule.over_folds(completed, "rmse", 2), [behind, behind]) is None


def test_a_trial_at_learning_rate_zero_is_judged_not_crashed():
    """xgboost accepts ``learning_rate: 0`` (a fixed value in a user's space); such a trial never improves and
    ends by the stall stop, behind the study's best."""
    rule = PruningRule(startup_trials=3, quantile=0.9, stall_rounds=3)
    check = rule.checker(FLAT, "rmse", rates=[1.0] * 3, rate=0.0)
    assert [check(r, 10.0) for r in range(4)] == [None, None, None, Stop.STALLED]


def stop_round_by_definition(rule: PruningRule, curves, rates, rate, curve):
    """Where the rule's documented definition stops ``curve`` (rmse, no stall stop), round by round: its best
    so far less ``fall_margin`` times its gain over its last 1 / rate rounds, against the ``quantile`` of the
    completed trials' best so far where each had made as much progress, its final best past its end."""
    unit, bests = round(1 / rate), []
    for round_, value in enumerate(curve):
        bests.append(min(bests[-1], value) if bests else value)
        if len(bests) <= unit:
            continue
        at_progress = [
            min(c[: max(1, min(len(c), math.floor((round_ + 1) * rate / r)))])
            for c, r in zip(curves, rates, strict=True)
        ]
        if bests[-1] - rule.fall_margin * (bests[-1 - unit] - bests[-1]) > np.quantile(at_progress, rule.quantile):
            return round_
    return None


@pytest.mark.parametrize("seed", [0, 1, 3, 4, 5])  # stopped at rounds 242-1104 (seed 2's trial is never)
def test_every_round_of_a_long_trial_is_judged_by_the_definition(seed):
    """The bars are computed for blocks of rounds at once: a trial that learns fast and then stalls at a
    random round up to 1,200 is stopped where the definition stops it, in whichever block that falls."""
    rng = np.random.default_rng(seed)
    rates = list(rng.uniform(0.02, 0.3, 8))
    paces = rng.uniform(0.5, 1.5, 8)
    curves = [list(100 / (1 + r * a * np.arange(1500))) for r, a in zip(rates, paces, strict=True)]
    rate, stalls_at = float(rng.uniform(0.02, 0.1)), int(rng.integers(100, 1000))
    rounds = np.minimum(np.arange(1500), stalls_at)
    curve = list(100 / (1 + rate * 2 * rounds) + rng.normal(0, 0.01, 1500))
    rule = PruningRule(
        3, quantile=float(rng.uniform(0.2, 0.6)), fall_margin=float(rng.uniform(0, 3)), stall_rounds=None
    )

    stopped = replay(rule.checker(curves, "rmse", rates, rate), curve)

    assert stopped is not None and stopped > stalls_at - 50
    assert stopped == stop_round_by_definition(rule, curves, rates, rate, curve)
