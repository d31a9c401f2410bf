"""Champion gating: an iteration's model becomes the champion only when its held-out score beats
the champion's by `gate.margin`; otherwise the iteration is marked rejected and the next one
starts from the champion. With gating off every iteration is accepted (the loop as in the papers).

Collapse guard: after evaluation every model is checked for the failure iterative DPO drifts into
(shorter, then empty answers). It is "collapsed" when its held-out no_answer_rate is above
`gate.max_no_answer_rate` or its mean response tokens relative to the seed's (written here as the
held-out metric `length_ratio_to_seed`) is below `gate.min_length_ratio`. With gating on a collapsed
model is rejected whatever its accuracy; with gating off it is accepted with a warning.
"""
from __future__ import annotations

from selfimprove.storage.db import Store
from selfimprove.storage.records import Evaluation
from selfimprove.tasks.common import log
from selfimprove.tasks.results import GateResult


def accept(new: float | None, champion: float | None, margin: float) -> bool:
    """Does the new score beat the champion's by more than `margin`?

    >>> accept(0.35, 0.30, 0.02), accept(0.31, 0.30, 0.02), accept(None, 0.3, 0.0), accept(0.1, None, 0.0)
    (True, False, False, True)
    """
    if new is None:
        return False
    return champion is None or new > champion + margin


def collapse_reason(no_answer_rate: float | None, length_ratio: float | None, gate_cfg) -> str:
    """Why a model counts as collapsed ("" when it does not); a missing metric never counts.

    >>> from selfimprove.config import GateConfig
    >>> g = GateConfig()
    >>> collapse_reason(0.0, 0.3, g), collapse_reason(0.02, 0.9, g), collapse_reason(None, None, g)
    ('length_ratio_to_seed 0.3 < 0.5', '', '')
    >>> collapse_reason(0.4, 0.2, g)
    'no_answer_rate 0.4 > 0.05; length_ratio_to_seed 0.2 < 0.5'
    """
    reasons = []
    if no_answer_rate is not None and no_answer_rate > gate_cfg.max_no_answer_rate:
        reasons.append(f"no_answer_rate {no_answer_rate:.3g} > {gate_cfg.max_no_answer_rate:g}")
    if length_ratio is not None and length_ratio < gate_cfg.min_length_ratio:
        reasons.append(f"length_ratio_to_seed {length_ratio:.3g} < {gate_cfg.min_length_ratio:g}")
    return "; ".join(reasons)


def length_ratio_to_seed(store: Store, run_id: str, iteration: int) -> float | None:
    """Held-out mean response tokens of this iteration's model over the seed's (iteration 0), recorded
    as the held-out metric `length_ratio_to_seed`; None when either is missing or the seed's is 0."""
    seed = store.metric(run_id, 0, "heldout", "mean_response_tokens")
    mean = store.metric(run_id, iteration, "heldout", "mean_response_tokens")
    if seed is None or mean is None or seed <= 0:
        return None
    row = store.iteration(run_id, iteration)
    store.add([Evaluation(run_id, iteration, "heldout", "length_ratio_to_seed", mean / seed,
                          row.model_hash if row else None)])
    return mean / seed


def gate_iteration(store: Store, cfg, run_id: str, iteration: int) -> GateResult:
    """Decide and record whether `iteration` is accepted; return the model the next one starts from.
    Iteration 0 (the seed) is the first champion."""
    gc = cfg.gate
    previous = store.champion_iteration(run_id, iteration)
    new = store.metric(run_id, iteration, "heldout", gc.metric)
    best = store.metric(run_id, previous, "heldout", gc.metric) if iteration else None
    why = collapse_reason(store.metric(run_id, iteration, "heldout", "no_answer_rate"),
                          length_ratio_to_seed(store, run_id, iteration), gc)
    if not iteration:
        accepted, reason = True, "seed: the first champion"
        if why:
            log.warning("the seed model already counts as collapsed (%s): with gating on, every iteration "
                        "will be rejected unless gate.max_no_answer_rate / gate.min_length_ratio allow it", why)
    elif not gc.enabled:
        accepted, reason = True, "gating off"
        if why:
            log.warning("iteration %d looks collapsed (%s); gating is off, so it is accepted and the next "
                        "iteration starts from it (gate.enabled: true rejects it)", iteration, why)
    elif why:
        accepted, reason = False, f"collapsed: {why}"
        log.warning("iteration %d rejected as collapsed (%s); the next starts from iteration %d",
                    iteration, why, previous)
    else:
        accepted = accept(new, best, gc.margin)
        reason = f"{gc.metric} {new} {'beats' if accepted else 'does not beat'} champion {best} + margin {gc.margin:g}"
    store.set_iteration_accepted(run_id, iteration, accepted)
    champion = iteration if accepted else previous
    return GateResult(accepted=accepted, champion_iteration=champion, new=new, champion_before=best,
                      model_dir=store.iteration(run_id, champion).model_path, collapsed=bool(why), reason=reason)
