"""Champion gating: an iteration's model becomes the champion only when its held-out score beats
the champion's by `gate.margin`; otherwise the iteration is marked rejected and the next one
starts from the champion. With gating off every iteration is accepted (the loop as in the papers).
"""
from __future__ import annotations

from selfimprove.storage.db import Store
from selfimprove.tasks.results import GateResult


def accept(new: float | None, champion: float | None, margin: float) -> bool:
    """Does the new score beat the champion's by more than `margin`?

    >>> accept(0.35, 0.30, 0.02), accept(0.31, 0.30, 0.02), accept(None, 0.3, 0.0), accept(0.1, None, 0.0)
    (True, False, False, True)
    """
    if new is None:
        return False
    return champion is None or new > champion + margin


def gate_iteration(store: Store, cfg, run_id: str, iteration: int) -> GateResult:
    """Decide and record whether `iteration` is accepted; return the model the next one starts from.
    Iteration 0 (the seed) is the first champion."""
    previous = store.champion_iteration(run_id, iteration)
    new = store.metric(run_id, iteration, "heldout", cfg.gate.metric)
    best = store.metric(run_id, previous, "heldout", cfg.gate.metric) if iteration else None
    accepted = accept(new, best, cfg.gate.margin) if cfg.gate.enabled and iteration else True
    store.set_iteration_accepted(run_id, iteration, accepted)
    champion = iteration if accepted else previous
    return GateResult(accepted=accepted, champion_iteration=champion, new=new, champion_before=best,
                      model_dir=store.iteration(run_id, champion).model_path)
