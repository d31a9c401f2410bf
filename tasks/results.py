"""Typed stage results: what each stage returns to the flow, stores in its ledger row, and logs.

One dataclass per stage (a method that reports more subclasses its stage's result). The ledger
keeps `to_json()`, so a resumed run gets the same typed result back (`from_json`) without running
the stage. `metrics()` is what MLflow and the Prefect metrics table get: the numeric fields.
Later stages read records from DuckDB, never another stage's result.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields

RESULT_TYPES: dict[str, type[StageResult]] = {}


@dataclass
class StageResult:
    seconds: float = 0.0  # wall time of the stage, set by run_stage

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        RESULT_TYPES[cls.__name__] = cls

    def metrics(self) -> dict[str, float]:
        """Numeric fields (dicts flattened as `field.key`), for MLflow and the UI."""
        out: dict[str, float] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            items = value.items() if isinstance(value, dict) else [(None, value)]
            for key, v in items:
                if isinstance(v, (int, float)) and v == v:  # bools count as 0/1; NaN is left out
                    out[f.name if key is None else f"{f.name}.{key}"] = float(v)
        return out

    def to_json(self) -> str:
        return json.dumps({"type": type(self).__name__, **asdict(self)}, default=float)


def from_json(text: str) -> StageResult:
    data = json.loads(text)
    kind = RESULT_TYPES[data.pop("type")]
    return kind(**data)


@dataclass
class PrepareResult(StageResult):
    seed_dir: str = ""
    prompts: dict[str, int] = field(default_factory=dict)  # split -> count


@dataclass
class GenerateResult(StageResult):
    samples: int = 0
    prompts: int = 0
    resumed_prompts: int = 0  # prompts whose samples were already written (a resumed stage)
    mean_tokens: float = 0.0
    engine: str = ""
    tokens_per_s: float | None = None
    temperature: float | None = None


@dataclass
class TemporalGenerateResult(GenerateResult):
    samples_past: int = 0  # M_0's samples (the anchored rejected side)
    mean_tokens_past: float = 0.0


@dataclass
class JudgeResult(StageResult):
    judgments: int = 0
    candidates: int = 0
    parse_failure_rate: float = 0.0
    score_mean: float | None = None
    score_std: float | None = None
    auc: float | None = None  # judge score vs the verifiable answer
    pair_accuracy: float | None = None  # within a prompt, right scored over wrong (tasks/judge.py)
    pair_count: int = 0  # the (right, wrong) pairs it is over
    skipped: bool = False  # no judge among the reward signals


@dataclass
class ScoreResult(StageResult):
    candidates: int = 0
    scored: int = 0  # candidates with a combined reward (an unparsed judge score leaves it out)
    signals: str = ""
    reward_mean: float | None = None


@dataclass
class BuildResult(StageResult):
    pairs: int = 0
    prompts: int = 0
    dropped: int = 0
    drop_reasons: dict[str, int] = field(default_factory=dict)
    mean_margin: float | None = None
    chosen_correct_rate: float | None = None  # with verifiable answers: how often the reward picked right
    rejected_correct_rate: float | None = None
    sft_examples: int = 0
    # Each side of the pairs: mean response tokens, share with an extracted answer (also evaluations split "pairs").
    chosen_tokens: float | None = None
    rejected_tokens: float | None = None
    chosen_answer_rate: float | None = None
    rejected_answer_rate: float | None = None


@dataclass
class TemporalBuildResult(BuildResult):
    rejected_from_past: int = 0
    chosen_from_future: int = 0
    lookahead_model_hash: str | None = None
    lookahead_loss: float | None = None
    lookahead_steps: int | None = None


@dataclass
class ExplorationFigures:
    """What B-STaR monitors (tasks/bstar.py: exploration_exploitation)."""
    pass_at_k: float = 0.0
    distinct_correct_per_query: float = 0.0
    reward_precision: float | None = None
    reward_recall: float | None = None
    selected_per_query: float = 0.0


@dataclass
class BStarBuildResult(BuildResult, ExplorationFigures):
    threshold: float = 0.0


@dataclass
class ProbeResult(StageResult, ExplorationFigures):
    temperature: float = 0.0
    threshold: float = 0.0
    balance: float = 0.0
    grid_size: int = 0
    kept_share: float | None = None  # of the chosen temperature's scored samples; 1.0: the reward filtered nothing


@dataclass
class TrainResult(StageResult):
    model_dir: str = ""
    model_hash: str = ""
    base_model_hash: str = ""
    examples: int = 0
    steps: int = 0
    loss: float | None = None
    first_loss: float | None = None
    last_loss: float | None = None
    train_seconds: float = 0.0  # the trainer alone
    params_changed_fraction: float = 0.0
    discarded_rows: int = 0  # GRPO: rows of a crashed attempt removed before retraining


@dataclass
class EvalResult(StageResult):
    # Held-out metrics under their plain names ("accuracy_greedy"), other splits as "gsm8k/accuracy_greedy".
    values: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, float]:
        return {**self.values, "seconds": self.seconds}


@dataclass
class TrackResult(StageResult):
    mlflow_run_id: str = ""
    model_version: str = ""


@dataclass
class GateResult(StageResult):
    accepted: bool = True
    champion_iteration: int = 0
    new: float | None = None
    champion_before: float | None = None
    model_dir: str = ""  # the model the next iteration starts from
    collapsed: bool = False  # held-out no-answer rate or length ratio to the seed past the gate's limits
    reason: str = ""  # why accepted or rejected (collapse named first)


@dataclass
class JudgeProbeResult(StageResult):
    """The judge's agreement with the verifier on the fixed probe answers (tasks/judge_probe.py)."""
    auc: float | None = None
    auc_low: float | None = None  # its 95% interval (tasks/stats.py: auc_interval)
    auc_high: float | None = None
    pair_accuracy: float | None = None  # within a prompt, right scored over wrong (tasks/judge.py)
    pair_count: int = 0
    candidates: int = 0
    right: int = 0  # probe answers the verifier marks right
    judge_model_hash: str = ""
    below_floor: bool = False  # the AUC was under judge.min_probe_auc (and the guard only warned)


@dataclass
class BootstrapResult(StageResult):
    """The judge bootstrap (tasks/bootstrap.py): its data, and judge and generator before vs after."""
    model_dir: str = ""
    model_hash: str = ""
    judge_examples: int = 0
    judge_examples_right: int = 0
    generation_examples: int = 0
    train_loss: float | None = None
    train_seconds: float = 0.0
    judge_auc_before: float | None = None  # on the probe
    judge_auc_after: float | None = None
    judge_auc_after_low: float | None = None  # its 95% interval
    judge_auc_after_high: float | None = None
    accuracy_before: float | None = None  # held-out greedy accuracy
    accuracy_after: float | None = None
    accuracy_diff: float | None = None  # after - before, same items, with its 95% interval
    accuracy_diff_low: float | None = None
    accuracy_diff_high: float | None = None
