"""Typed rows: one frozen dataclass per table (fields = columns, in order) and the few joined
shapes the stages read. Code outside storage/ reads and writes these, never SQL.

`created_at` defaults to now, so writers leave it out. tests/test_storage.py checks that every
record's fields are exactly its table's columns.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import UTC, datetime


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    project: str
    method: str
    created_at: datetime
    config_json: str
    config_hash: str
    seed_model: str
    mlflow_run_id: str | None = None
    prefect_flow_run_id: str | None = None


@dataclass(frozen=True, slots=True)
class Iteration:
    run_id: str
    iteration: int
    model_path: str | None
    model_hash: str | None
    started_at: datetime = field(default_factory=now)
    mlflow_run_id: str | None = None
    accepted: bool | None = None


@dataclass(frozen=True, slots=True)
class Prompt:
    run_id: str
    prompt_id: str
    split: str
    source: str
    question: str
    answer: str | None
    prompt_text: str
    metadata_json: str


@dataclass(frozen=True, slots=True)
class Generation:
    generation_id: str
    run_id: str
    iteration: int
    purpose: str
    prompt_id: str
    sample_index: int
    model_path: str
    model_hash: str | None
    engine: str
    temperature: float
    text: str
    token_ids: list[int]
    logprobs: list[float] | None
    finish_reason: str | None
    num_tokens: int
    extracted_answer: str | None
    correct: bool | None
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class Judgment:
    judgment_id: str
    run_id: str
    iteration: int
    generation_id: str
    judge_index: int
    mode: str
    judge_model_hash: str
    raw_text: str
    score: float | None
    parsed: bool
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class Pair:
    pair_id: str
    run_id: str
    iteration: int
    prompt_id: str
    chosen_generation_id: str
    rejected_generation_id: str
    chosen_score: float
    rejected_score: float
    margin: float
    created_at: datetime = field(default_factory=now)
    chosen_source: str = "current"
    rejected_source: str = "current"


@dataclass(frozen=True, slots=True)
class Reward:
    """One signal's value for one generation; signal "reward" is the configured weighted sum."""
    run_id: str
    iteration: int
    generation_id: str
    signal: str
    value: float | None
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class SftExample:
    run_id: str
    iteration: int
    generation_id: str
    prompt_id: str
    reward: float | None
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class BootstrapExample:
    """One example of the judge bootstrap: a judge example (the user turn asks about a labelled
    answer, the completion is the right verdict) or a generation example (a seed prompt and the
    seed model's own greedy answer, no label)."""
    run_id: str
    example_id: str
    kind: str  # "judge" | "generation"
    prompt_id: str
    generation_ids: str  # the answer(s) the example is about, comma-separated (two for pairwise)
    user_text: str
    completion: str
    wrong_completion: str | None  # judge examples: the wrong verdict (the rejected side when replayed in DPO)
    label: bool | None  # judge examples: is the judged answer right
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class BstarGridRow:
    run_id: str
    iteration: int
    temperature: float
    threshold: float
    balance: float
    selected_per_query: float
    precision: float | None
    chosen: bool


@dataclass(frozen=True, slots=True)
class PairDrop:
    run_id: str
    iteration: int
    prompt_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class TrainRun:
    run_id: str
    iteration: int
    algorithm: str
    base_model_path: str
    output_model_path: str
    output_model_hash: str
    num_examples: int
    steps: int
    train_loss: float | None
    seconds: float
    params_changed_fraction: float
    config_json: str
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class Evaluation:
    run_id: str
    iteration: int
    split: str
    metric: str
    value: float
    model_hash: str | None
    created_at: datetime = field(default_factory=now)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    """A finished stage: its typed result as JSON (tasks/results.py reads it back)."""
    run_id: str
    iteration: int
    stage: str
    seconds: float
    summary_json: str
    finished_at: datetime = field(default_factory=now)


TABLE_OF: dict[type, str] = {
    Run: "runs", Iteration: "iterations", Prompt: "prompts", Generation: "generations", Judgment: "judgments",
    Pair: "pairs", Reward: "rewards", SftExample: "sft_examples", BstarGridRow: "bstar_grid", PairDrop: "pair_drops",
    TrainRun: "train_runs", Evaluation: "evaluations", LedgerEntry: "stage_ledger",
    BootstrapExample: "bootstrap_examples",
}


def columns(record_type: type) -> list[str]:
    return [f.name for f in fields(record_type)]


# ---- joined shapes the stages read -------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Candidate:
    """A generation with what ranking needs: its prompt, mean parsed judge score, combined reward."""
    generation_id: str
    prompt_id: str
    purpose: str
    sample_index: int
    text: str
    token_ids: list[int]
    extracted_answer: str | None
    correct: bool | None
    prompt_text: str
    question: str
    judge_score: float | None = None  # mean of the parsed judgments
    reward: float | None = None  # signal "reward"


@dataclass(frozen=True, slots=True)
class PairText:
    """A pair with the texts training reads."""
    pair_id: str
    prompt_id: str
    prompt_text: str
    chosen_text: str
    rejected_text: str
    chosen_generation_id: str
    rejected_generation_id: str
    chosen_score: float
    rejected_score: float


@dataclass(frozen=True, slots=True)
class SftText:
    generation_id: str
    prompt_text: str
    text: str


@dataclass(frozen=True, slots=True)
class JudgedCandidate:
    """Per judged generation: verifiable correctness and the judge's mean score (for AUC)."""
    generation_id: str
    prompt_id: str
    correct: bool | None
    score: float | None
    judgments: int
    unparsed: int


@dataclass(frozen=True, slots=True)
class CandidateDetail:
    """A training candidate as the samples page shows it."""
    generation_id: str
    purpose: str
    sample_index: int
    text: str
    extracted_answer: str | None
    correct: bool | None
    reward: float | None
    judge_text: str | None
    judge_score: float | None


@dataclass(frozen=True, slots=True)
class IterationSummary:
    """One row of the `iteration_summary` view (storage/schema.py): the numbers compared first."""
    run_id: str
    iteration: int
    accuracy_greedy: float | None
    diff_vs_seed: float | None  # held-out greedy accuracy minus the seed's, same items (paired)
    diff_vs_seed_low: float | None  # its 95% interval
    diff_vs_seed_high: float | None
    diff_vs_prev: float | None  # ... minus the previous iteration's
    diff_vs_prev_low: float | None
    diff_vs_prev_high: float | None
    maj_at_k: float | None
    pass_at_k: float | None
    mean_response_tokens: float | None
    length_ratio: float | None  # mean held-out response length / the seed's
    no_answer_rate: float | None
    judge_score_mean: float | None
    judge_auc: float | None
    probe_auc: float | None  # the judge's AUC on the probe split
    judge_parse_failure_rate: float | None
    pairs: int | None
    chosen_tokens: float | None  # chosen_* / rejected_*: the build stage's pair statistics (split 'pairs')
    rejected_tokens: float | None
    chosen_answer_rate: float | None
    rejected_answer_rate: float | None
    sft_examples: int | None
    train_loss: float | None
    accepted: bool | None
    t_bootstrap: float | None  # t_*: seconds per stage (stage_ledger); bootstrap is iteration 0's
    t_judge_probe: float | None
    t_probe: float | None  # B-STaR's temperature/threshold probe
    t_generate: float | None
    t_judge: float | None
    t_score: float | None
    t_build: float | None
    t_train: float | None
    t_evaluate: float | None
    t_track: float | None
