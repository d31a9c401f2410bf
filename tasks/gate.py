"""Champion gating: an iteration's model becomes the champion only when its held-out score beats
the champion's by `gate.margin`; otherwise the iteration is marked rejected and the next one
starts from the champion. With gating off every iteration is accepted (the loop as in the papers).
"""
from __future__ import annotations

from storage.db import Store


def accept(new: float | None, champion: float | None, margin: float) -> bool:
    """Does the new score beat the champion's by more than `margin`?

    >>> accept(0.35, 0.30, 0.02), accept(0.31, 0.30, 0.02), accept(None, 0.3, 0.0), accept(0.1, None, 0.0)
    (True, False, False, True)
    """
    if new is None:
        return False
    return champion is None or new > champion + margin


def champion_iteration(store: Store, run_id: str, before: int) -> int:
    """The latest accepted iteration before `before` (iteration 0, the seed, is accepted by definition)."""
    rows = store.query("SELECT max(iteration) AS it FROM iterations WHERE run_id = ? AND iteration < ? "
                       "AND (iteration = 0 OR accepted)", [run_id, before])
    return rows[0]["it"] or 0


def metric_value(store: Store, run_id: str, iteration: int, metric: str) -> float | None:
    rows = store.query("SELECT value FROM evaluations WHERE run_id = ? AND iteration = ? AND split = 'heldout' "
                       "AND metric = ?", [run_id, iteration, metric])
    return rows[0]["value"] if rows else None


def gate_iteration(store: Store, cfg, run_id: str, iteration: int) -> dict:
    """Decide and record whether `iteration` is accepted; return the model the next one starts from.
    Iteration 0 (the seed) is the first champion."""
    previous = champion_iteration(store, run_id, iteration)
    new = metric_value(store, run_id, iteration, cfg.gate.metric)
    best = metric_value(store, run_id, previous, cfg.gate.metric) if iteration else None
    accepted = accept(new, best, cfg.gate.margin) if cfg.gate.enabled and iteration else True
    store.update_iteration(run_id, iteration, accepted=accepted)
    champion = iteration if accepted else previous
    return {"accepted": accepted, "champion_iteration": champion, "new": new, "champion_before": best,
            "model_dir": store.iteration(run_id, champion)["model_path"]}
