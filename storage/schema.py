"""DuckDB schema: every artifact of every run, append-only, keyed so a repeated write adds nothing.

Keys are deterministic (run, iteration, prompt, sample index, ...), so redoing a stage after a
crash produces the same keys and `INSERT OR IGNORE` keeps the rows already written.
"""

TABLES = {
    "runs": """
        run_id VARCHAR PRIMARY KEY, project VARCHAR, method VARCHAR, created_at TIMESTAMP,
        config_json VARCHAR, config_hash VARCHAR, seed_model VARCHAR,
        mlflow_run_id VARCHAR, prefect_flow_run_id VARCHAR""",
    "iterations": """
        run_id VARCHAR, iteration INTEGER, model_path VARCHAR, model_hash VARCHAR,
        started_at TIMESTAMP, mlflow_run_id VARCHAR, accepted BOOLEAN, PRIMARY KEY (run_id, iteration)""",
    "prompts": """
        run_id VARCHAR, prompt_id VARCHAR, split VARCHAR, source VARCHAR, question VARCHAR,
        answer VARCHAR, prompt_text VARCHAR, metadata_json VARCHAR, PRIMARY KEY (run_id, prompt_id)""",
    "generations": """
        generation_id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, purpose VARCHAR,
        prompt_id VARCHAR, sample_index INTEGER, model_path VARCHAR, model_hash VARCHAR,
        engine VARCHAR, temperature DOUBLE, text VARCHAR, token_ids INTEGER[], logprobs DOUBLE[],
        finish_reason VARCHAR, num_tokens INTEGER, extracted_answer VARCHAR, correct BOOLEAN,
        created_at TIMESTAMP""",
    "judgments": """
        judgment_id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, generation_id VARCHAR,
        judge_index INTEGER, mode VARCHAR, judge_model_hash VARCHAR, raw_text VARCHAR,
        score DOUBLE, parsed BOOLEAN, created_at TIMESTAMP""",
    "pairs": """
        pair_id VARCHAR PRIMARY KEY, run_id VARCHAR, iteration INTEGER, prompt_id VARCHAR,
        chosen_generation_id VARCHAR, rejected_generation_id VARCHAR, chosen_score DOUBLE,
        rejected_score DOUBLE, margin DOUBLE, created_at TIMESTAMP,
        chosen_source VARCHAR, rejected_source VARCHAR""",
    # One value per (generation, signal); signal "reward" is the configured weighted combination.
    "rewards": """
        run_id VARCHAR, iteration INTEGER, generation_id VARCHAR, signal VARCHAR, value DOUBLE,
        created_at TIMESTAMP, PRIMARY KEY (generation_id, signal)""",
    # Samples selected for supervised fine-tuning (B-STaR), by generation id.
    "sft_examples": """
        run_id VARCHAR, iteration INTEGER, generation_id VARCHAR, prompt_id VARCHAR, reward DOUBLE,
        created_at TIMESTAMP, PRIMARY KEY (run_id, iteration, generation_id)""",
    # The judge bootstrap's training examples (tasks/bootstrap.py), before iteration 1.
    "bootstrap_examples": """
        run_id VARCHAR, example_id VARCHAR, kind VARCHAR, prompt_id VARCHAR, generation_ids VARCHAR,
        user_text VARCHAR, completion VARCHAR, wrong_completion VARCHAR, label BOOLEAN, created_at TIMESTAMP,
        PRIMARY KEY (run_id, example_id)""",
    # B-STaR's per-iteration grid: every (temperature, threshold) tried and the one chosen.
    "bstar_grid": """
        run_id VARCHAR, iteration INTEGER, temperature DOUBLE, threshold DOUBLE, balance DOUBLE,
        selected_per_query DOUBLE, precision DOUBLE, chosen BOOLEAN,
        PRIMARY KEY (run_id, iteration, temperature, threshold)""",
    "pair_drops": """
        run_id VARCHAR, iteration INTEGER, prompt_id VARCHAR, reason VARCHAR,
        PRIMARY KEY (run_id, iteration, prompt_id)""",
    "train_runs": """
        run_id VARCHAR, iteration INTEGER, algorithm VARCHAR, base_model_path VARCHAR,
        output_model_path VARCHAR, output_model_hash VARCHAR, num_examples INTEGER, steps INTEGER,
        train_loss DOUBLE, seconds DOUBLE, params_changed_fraction DOUBLE, config_json VARCHAR,
        created_at TIMESTAMP, PRIMARY KEY (run_id, iteration)""",
    "evaluations": """
        run_id VARCHAR, iteration INTEGER, split VARCHAR, metric VARCHAR, value DOUBLE,
        model_hash VARCHAR, created_at TIMESTAMP, PRIMARY KEY (run_id, iteration, split, metric)""",
    # The stage ledger: a row means that stage of that iteration finished and its rows are all in.
    "stage_ledger": """
        run_id VARCHAR, iteration INTEGER, stage VARCHAR, seconds DOUBLE, summary_json VARCHAR,
        finished_at TIMESTAMP, PRIMARY KEY (run_id, iteration, stage)""",
}

VIEWS = {
    # One row per iteration: the numbers a user compares first. The one definition of the summary:
    # `show`, the report, the Prefect artifacts and benchmarks/methods.py all read this view.
    "iteration_summary": """
        WITH e AS (
          SELECT run_id, iteration,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'accuracy_greedy') AS accuracy_greedy,
            -- new - old held-out greedy accuracy on the same items, with its paired 95% interval
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_seed') AS diff_vs_seed,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_seed_low') AS diff_vs_seed_low,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_seed_high') AS diff_vs_seed_high,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_prev') AS diff_vs_prev,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_prev_low') AS diff_vs_prev_low,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'diff_vs_prev_high') AS diff_vs_prev_high,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'maj_at_k') AS maj_at_k,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'pass_at_k') AS pass_at_k,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'mean_response_tokens') AS mean_response_tokens,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'length_ratio_to_seed') AS length_ratio,
            max(value) FILTER (WHERE split = 'heldout' AND metric = 'no_answer_rate') AS no_answer_rate,
            max(value) FILTER (WHERE split = 'train' AND metric = 'judge_score_mean') AS judge_score_mean,
            max(value) FILTER (WHERE split = 'train' AND metric = 'judge_auc') AS judge_auc,
            max(value) FILTER (WHERE split = 'probe' AND metric = 'judge_auc') AS probe_auc,
            max(value) FILTER (WHERE split = 'train' AND metric = 'judge_parse_failure_rate')
              AS judge_parse_failure_rate,
            max(value) FILTER (WHERE split = 'pairs' AND metric = 'chosen_tokens') AS chosen_tokens,
            max(value) FILTER (WHERE split = 'pairs' AND metric = 'rejected_tokens') AS rejected_tokens,
            max(value) FILTER (WHERE split = 'pairs' AND metric = 'chosen_answer_rate') AS chosen_answer_rate,
            max(value) FILTER (WHERE split = 'pairs' AND metric = 'rejected_answer_rate') AS rejected_answer_rate
          FROM evaluations GROUP BY run_id, iteration),
        l AS (
          SELECT run_id, iteration,
            max(seconds) FILTER (WHERE stage = 'bootstrap') AS t_bootstrap,
            max(seconds) FILTER (WHERE stage = 'judge_probe') AS t_judge_probe,
            max(seconds) FILTER (WHERE stage = 'probe') AS t_probe,
            max(seconds) FILTER (WHERE stage = 'generate') AS t_generate,
            max(seconds) FILTER (WHERE stage = 'judge') AS t_judge,
            max(seconds) FILTER (WHERE stage = 'score') AS t_score,
            max(seconds) FILTER (WHERE stage = 'build') AS t_build,
            max(seconds) FILTER (WHERE stage = 'train') AS t_train,
            max(seconds) FILTER (WHERE stage = 'evaluate') AS t_evaluate,
            max(seconds) FILTER (WHERE stage = 'track') AS t_track
          FROM stage_ledger GROUP BY run_id, iteration),
        p AS (SELECT run_id, iteration, count(*) AS pairs FROM pairs GROUP BY run_id, iteration),
        s AS (SELECT run_id, iteration, count(*) AS sft_examples FROM sft_examples GROUP BY run_id, iteration)
        SELECT i.run_id, i.iteration, e.accuracy_greedy, e.diff_vs_seed, e.diff_vs_seed_low, e.diff_vs_seed_high,
          e.diff_vs_prev, e.diff_vs_prev_low, e.diff_vs_prev_high, e.maj_at_k, e.pass_at_k, e.mean_response_tokens,
          e.length_ratio, e.no_answer_rate, e.judge_score_mean, e.judge_auc, e.probe_auc, e.judge_parse_failure_rate,
          p.pairs, e.chosen_tokens, e.rejected_tokens, e.chosen_answer_rate, e.rejected_answer_rate, s.sft_examples,
          t.train_loss, i.accepted, l.t_bootstrap, l.t_judge_probe, l.t_probe, l.t_generate, l.t_judge, l.t_score,
          l.t_build, l.t_train, l.t_evaluate, l.t_track
        FROM iterations i
        LEFT JOIN e USING (run_id, iteration) LEFT JOIN l USING (run_id, iteration)
        LEFT JOIN p USING (run_id, iteration) LEFT JOIN s USING (run_id, iteration)
        LEFT JOIN train_runs t USING (run_id, iteration)""",
    # Each pair with both texts and the model that produced each side.
    "pair_lineage": """
        SELECT p.run_id, p.iteration, p.prompt_id, pr.question, c.text AS chosen, r.text AS rejected,
               p.chosen_score, p.rejected_score, p.margin, c.correct AS chosen_correct,
               r.correct AS rejected_correct, c.model_hash AS chosen_model, r.model_hash AS rejected_model
        FROM pairs p
        JOIN generations c ON c.generation_id = p.chosen_generation_id
        JOIN generations r ON r.generation_id = p.rejected_generation_id
        JOIN prompts pr ON pr.run_id = p.run_id AND pr.prompt_id = p.prompt_id""",
}
