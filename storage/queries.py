"""Typed reads: every question the pipeline asks of the records, as a method returning records.

Mixed into Store (storage/db.py). Each method is one short read-only connection; rows come back
as the dataclasses of storage/records.py.
"""
from __future__ import annotations

from selfimprove.storage.records import (
    BootstrapExample,
    BstarGridRow,
    Candidate,
    CandidateDetail,
    Evaluation,
    Generation,
    Iteration,
    IterationSummary,
    JudgedCandidate,
    LedgerEntry,
    Pair,
    PairText,
    Prompt,
    Run,
    SftText,
    columns,
)
from selfimprove.storage.schema import VIEWS

_CANDIDATE = (
    "SELECT g.generation_id, g.prompt_id, g.purpose, g.sample_index, g.text, g.token_ids, g.extracted_answer, "
    "g.correct, p.prompt_text, p.question, "
    "(SELECT avg(j.score) FROM judgments j WHERE j.generation_id = g.generation_id AND j.parsed) AS judge_score, "
    "(SELECT r.value FROM rewards r WHERE r.generation_id = g.generation_id AND r.signal = 'reward') AS reward "
    "FROM generations g JOIN prompts p ON p.run_id = g.run_id AND p.prompt_id = g.prompt_id ")


class Queries:
    def query(self, sql: str, params: list | None = None) -> list[dict]:  # implemented by Store
        raise NotImplementedError

    def _rows(self, kind: type, sql: str, params: list) -> list:
        return [kind(**row) for row in self.query(sql, params)]

    def _all(self, kind: type, table: str, where: str, params: list, order: str = "") -> list:
        cols = ", ".join(columns(kind))
        return self._rows(kind, f"SELECT {cols} FROM {table} WHERE {where}{' ORDER BY ' + order if order else ''}",
                          params)

    # ---- runs and iterations --------------------------------------------------------------------
    def run(self, run_id: str) -> Run | None:
        rows = self._all(Run, "runs", "run_id = ?", [run_id])
        return rows[0] if rows else None

    def runs(self) -> list[Run]:
        return self._all(Run, "runs", "true", [], "created_at")

    def iteration(self, run_id: str, iteration: int) -> Iteration | None:
        rows = self._all(Iteration, "iterations", "run_id = ? AND iteration = ?", [run_id, iteration])
        return rows[0] if rows else None

    def champion_iteration(self, run_id: str, before: int) -> int:
        """The latest accepted iteration before `before` (iteration 0, the seed, is accepted by definition)."""
        rows = self.query("SELECT max(iteration) AS it FROM iterations WHERE run_id = ? AND iteration < ? "
                          "AND (iteration = 0 OR accepted)", [run_id, before])
        return rows[0]["it"] or 0

    def latest_unfinished_run(self, config_hash: str, iterations: int) -> str | None:
        """The newest run with this config whose last iteration has not been gated (it stopped early)."""
        rows = self.query(
            "SELECT run_id FROM runs r WHERE config_hash = ? AND NOT EXISTS (SELECT 1 FROM stage_ledger l "
            "WHERE l.run_id = r.run_id AND l.stage = 'gate' AND l.iteration = ?) ORDER BY created_at DESC LIMIT 1",
            [config_hash, iterations])
        return rows[0]["run_id"] if rows else None

    # ---- the stage ledger ---------------------------------------------------------------------------
    def ledger_entry(self, run_id: str, iteration: int, stage: str) -> LedgerEntry | None:
        rows = self._all(LedgerEntry, "stage_ledger", "run_id = ? AND iteration = ? AND stage = ?",
                         [run_id, iteration, stage])
        return rows[0] if rows else None

    def ledger(self, run_id: str) -> list[LedgerEntry]:
        return self._all(LedgerEntry, "stage_ledger", "run_id = ?", [run_id], "finished_at")

    # ---- prompts --------------------------------------------------------------------------------------
    def prompts(self, run_id: str, split: str) -> list[Prompt]:
        return self._all(Prompt, "prompts", "run_id = ? AND split = ?", [run_id, split], "prompt_id")

    def probe_judgments(self, run_id: str, judge_hash: str) -> list[JudgedCandidate]:
        """The fixed probe answers (purpose probe_sample) as the judge model with this hash scored them."""
        return self._rows(JudgedCandidate, (
            "SELECT g.generation_id, g.prompt_id, g.correct, avg(j.score) AS score, count(*) AS judgments, "
            "sum(CASE WHEN j.parsed THEN 0 ELSE 1 END) AS unparsed FROM judgments j "
            "JOIN generations g USING (generation_id) WHERE j.run_id = ? AND g.purpose = 'probe_sample' "
            "AND j.judge_model_hash = ? GROUP BY g.generation_id, g.prompt_id, g.correct ORDER BY g.generation_id"),
            [run_id, judge_hash])

    def bootstrap_examples(self, run_id: str, kind: str | None = None) -> list[BootstrapExample]:
        where, params = ("run_id = ? AND kind = ?", [run_id, kind]) if kind else ("run_id = ?", [run_id])
        return self._all(BootstrapExample, "bootstrap_examples", where, params, "example_id")

    def prompt(self, run_id: str, prompt_id: str) -> Prompt:
        return self._all(Prompt, "prompts", "run_id = ? AND prompt_id = ?", [run_id, prompt_id])[0]

    def prompt_counts(self, run_id: str) -> dict[str, int]:
        return {r["split"]: r["n"] for r in self.query(
            "SELECT split, count(*) AS n FROM prompts WHERE run_id = ? GROUP BY split ORDER BY split", [run_id])}

    def extra_eval_splits(self, run_id: str) -> list[str]:
        """Evaluation-only sources (e.g. gsm8k) besides the held-out split."""
        return [r["split"] for r in self.query(
            "SELECT DISTINCT split FROM prompts WHERE run_id = ? "
            "AND split NOT IN ('train', 'heldout', 'seed', 'probe') ORDER BY split", [run_id])]

    # ---- generations, judgments, rewards -------------------------------------------------------------
    def generations(self, run_id: str, iteration: int, purpose: str) -> list[Generation]:
        return self._all(Generation, "generations", "run_id = ? AND iteration = ? AND purpose = ?",
                         [run_id, iteration, purpose], "prompt_id, sample_index")

    def sample_counts(self, run_id: str, iteration: int, purpose: str) -> dict[str, int]:
        """prompt_id -> samples already written (what a resumed generation stage skips)."""
        return {r["prompt_id"]: r["n"] for r in self.query(
            "SELECT prompt_id, count(*) AS n FROM generations WHERE run_id = ? AND iteration = ? AND purpose = ? "
            "GROUP BY prompt_id", [run_id, iteration, purpose])}

    def correctness(self, run_id: str, iteration: int) -> dict[str, bool | None]:
        return {r["generation_id"]: r["correct"] for r in self.query(
            "SELECT generation_id, correct FROM generations WHERE run_id = ? AND iteration = ?", [run_id, iteration])}

    def judged_generation_ids(self, run_id: str, iteration: int, at_least: int) -> set[str]:
        return {r["generation_id"] for r in self.query(
            "SELECT generation_id FROM judgments WHERE run_id = ? AND iteration = ? GROUP BY generation_id "
            "HAVING count(*) >= ?", [run_id, iteration, at_least])}

    def judged_candidates(self, run_id: str, iteration: int) -> list[JudgedCandidate]:
        return self._rows(JudgedCandidate, (
            "SELECT g.generation_id, g.prompt_id, g.correct, avg(j.score) AS score, count(*) AS judgments, "
            "sum(CASE WHEN j.parsed THEN 0 ELSE 1 END) AS unparsed FROM judgments j "
            "JOIN generations g USING (generation_id) WHERE j.run_id = ? AND j.iteration = ? "
            "AND g.purpose <> 'probe_sample' "
            "GROUP BY g.generation_id, g.prompt_id, g.correct ORDER BY g.generation_id"), [run_id, iteration])

    def candidates(self, run_id: str, iteration: int, purposes: list[str] | tuple[str, ...]) -> list[Candidate]:
        """Generations of these purposes with their prompt, mean parsed judge score and combined reward,
        ordered by prompt, purpose and sample index (so groups come out whole)."""
        marks = ", ".join("?" * len(purposes))
        return self._rows(Candidate, _CANDIDATE + f"WHERE g.run_id = ? AND g.iteration = ? AND g.purpose IN ({marks}) "
                          "ORDER BY g.prompt_id, g.purpose, g.sample_index", [run_id, iteration, *purposes])

    def length_and_answer(self, run_id: str, iteration: int) -> dict[str, tuple[int | None, bool]]:
        """generation_id -> (num_tokens, has an extracted answer), for every generation of the iteration."""
        return {r["generation_id"]: (r["num_tokens"], r["answered"]) for r in self.query(
            "SELECT generation_id, num_tokens, extracted_answer IS NOT NULL AS answered FROM generations "
            "WHERE run_id = ? AND iteration = ?", [run_id, iteration])}

    # ---- training data ------------------------------------------------------------------------------
    def pairs(self, run_id: str, iteration: int) -> list[Pair]:
        return self._all(Pair, "pairs", "run_id = ? AND iteration = ?", [run_id, iteration], "prompt_id")

    def pair_texts(self, run_id: str, iteration: int) -> list[PairText]:
        return self._rows(PairText, (
            "SELECT p.pair_id, p.prompt_id, pr.prompt_text, c.text AS chosen_text, r.text AS rejected_text, "
            "p.chosen_generation_id, p.rejected_generation_id, p.chosen_score, p.rejected_score FROM pairs p "
            "JOIN prompts pr ON pr.run_id = p.run_id AND pr.prompt_id = p.prompt_id "
            "JOIN generations c ON c.generation_id = p.chosen_generation_id "
            "JOIN generations r ON r.generation_id = p.rejected_generation_id "
            "WHERE p.run_id = ? AND p.iteration = ? ORDER BY p.prompt_id"), [run_id, iteration])

    def sft_texts(self, run_id: str, iteration: int) -> list[SftText]:
        return self._rows(SftText, (
            "SELECT s.generation_id, p.prompt_text, g.text FROM sft_examples s "
            "JOIN generations g USING (generation_id) "
            "JOIN prompts p ON p.run_id = s.run_id AND p.prompt_id = s.prompt_id "
            "WHERE s.run_id = ? AND s.iteration = ? ORDER BY s.generation_id"), [run_id, iteration])

    def bstar_choice(self, run_id: str, iteration: int) -> BstarGridRow | None:
        """The (temperature, threshold) B-STaR's probe chose for this iteration."""
        rows = self._all(BstarGridRow, "bstar_grid", "run_id = ? AND iteration = ? AND chosen", [run_id, iteration])
        return rows[0] if rows else None

    # ---- evaluation and summaries ---------------------------------------------------------------------
    def evaluations(self, run_id: str) -> list[Evaluation]:
        return self._all(Evaluation, "evaluations", "run_id = ?", [run_id], "iteration, split, metric")

    def metric(self, run_id: str, iteration: int, split: str, metric: str) -> float | None:
        rows = self.query("SELECT value FROM evaluations WHERE run_id = ? AND iteration = ? AND split = ? "
                          "AND metric = ?", [run_id, iteration, split, metric])
        return rows[0]["value"] if rows else None

    def greedy_correctness(self, run_id: str, iteration: int, purpose: str) -> dict[str, bool]:
        """prompt_id -> correctness of the greedy answer (sample 0); items without a reference
        (correct IS NULL) are left out, so a paired comparison skips them."""
        return {r["prompt_id"]: r["correct"] for r in self.query(
            "SELECT prompt_id, correct FROM generations WHERE run_id = ? AND iteration = ? AND purpose = ? "
            "AND sample_index = 0 AND correct IS NOT NULL", [run_id, iteration, purpose])}

    def iteration_summary(self, run_id: str) -> list[IterationSummary]:
        # The view's current definition, inlined: a reader (create=False) of a file written by an older
        # version still has the older stored view, which lacks columns added since.
        cols = ", ".join(columns(IterationSummary))
        return self._rows(IterationSummary, f"SELECT {cols} FROM ({VIEWS['iteration_summary']}) WHERE run_id = ? "
                          "ORDER BY iteration", [run_id])

    def values_by_iteration(self, run_id: str, what: str) -> dict[int, list[float]]:
        """Per iteration, the values the report plots: 'reward' (combined self-reward of each candidate),
        'greedy_length' (held-out greedy response tokens) or 'margin' (pair margins)."""
        sql = {"reward": "SELECT g.iteration, r.value FROM rewards r JOIN generations g USING (generation_id) "
                         "WHERE g.run_id = ? AND r.signal = 'reward' AND r.value IS NOT NULL",
               "greedy_length": "SELECT iteration, num_tokens AS value FROM generations "
                                "WHERE run_id = ? AND purpose = 'eval_greedy'",
               "margin": "SELECT iteration, margin AS value FROM pairs WHERE run_id = ?"}[what]
        groups: dict[int, list[float]] = {}
        for row in self.query(sql, [run_id]):
            groups.setdefault(row["iteration"], []).append(float(row["value"]))
        return groups

    def sample_prompt_ids(self, run_id: str, iteration: int, limit: int) -> list[str]:
        """Prompts to show on the samples page: the largest pair margins, else the first trained on."""
        rows = self.query("SELECT prompt_id FROM pairs WHERE run_id = ? AND iteration = ? "
                          "ORDER BY margin DESC, pair_id LIMIT ?", [run_id, iteration, limit]) or self.query(
            "SELECT DISTINCT prompt_id FROM generations WHERE run_id = ? AND iteration = ? "
            "AND purpose NOT LIKE 'eval%' ORDER BY prompt_id LIMIT ?", [run_id, iteration, limit])
        return [r["prompt_id"] for r in rows]

    def candidate_details(self, run_id: str, iteration: int, prompt_id: str) -> list[CandidateDetail]:
        return self._rows(CandidateDetail, (
            "SELECT g.generation_id, g.purpose, g.sample_index, g.text, g.extracted_answer, g.correct, "
            "  (SELECT value FROM rewards r WHERE r.generation_id = g.generation_id AND r.signal = 'reward') "
            "    AS reward, "
            "  (SELECT first(j.raw_text) FROM judgments j WHERE j.generation_id = g.generation_id) AS judge_text, "
            "  (SELECT avg(j.score) FROM judgments j WHERE j.generation_id = g.generation_id) AS judge_score "
            "FROM generations g WHERE g.run_id = ? AND g.iteration = ? AND g.prompt_id = ? "
            "AND g.purpose NOT LIKE 'eval%' ORDER BY g.purpose, g.sample_index"), [run_id, iteration, prompt_id])
