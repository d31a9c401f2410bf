"""The logprob and pairwise judges read next-token probabilities from the generation engine (vLLM,
prefix-cached) or from a teacher-forced transformers pass: both must give the same scores."""
import pytest

from selfimprove.models.engines import close_engine, get_engine, vllm_available
from selfimprove.models.loading import load_tokenizer
from selfimprove.models.scoring import transformers_scorer
from selfimprove.tasks.judge import judge_logprob
from selfimprove.tasks.judge_pairwise import judge_groups
from selfimprove.tasks.judge_prompt import judge_prompt

QUESTIONS = ["Calculate 3 + 4.", "What is 12 - 5?", "Calculate 7 + 8."]
ANSWERS = [["7", "Answer: 7", "I think 8"], ["7", "17", "Answer: 5"], ["15", "Answer: 15", "no idea"]]


@pytest.mark.parametrize("engine_name", ["transformers"] + (["vllm"] if vllm_available() else []))
def test_engine_judge_equals_transformers_judge(tiny_model_dir, engine_name):
    tokenizer = load_tokenizer(tiny_model_dir)
    # float32 on CPU: with model.device auto a GPU machine would score in bf16, off by more than 1e-3.
    reference = transformers_scorer(tiny_model_dir, "cpu")
    engine = get_engine(engine_name, tiny_model_dir, dtype="float32", max_model_len=1024)
    try:
        texts = [judge_prompt(q, a) for q, answers in zip(QUESTIONS, ANSWERS) for a in answers]
        mine = [score for ((_, score),) in judge_logprob(engine.next_token_logprobs, tokenizer, texts)]
        ref = [score for ((_, score),) in judge_logprob(reference, tokenizer, texts)]
        assert mine == pytest.approx(ref, abs=1e-3)
        assert len({round(s, 4) for s in ref}) > 1  # the judge does tell the answers apart
        groups = list(zip(QUESTIONS, ANSWERS))
        mine = [s for verdicts in judge_groups(engine.next_token_logprobs, tokenizer, groups) for _, s in verdicts]
        ref = [s for verdicts in judge_groups(reference, tokenizer, groups) for _, s in verdicts]
        assert mine == pytest.approx(ref, abs=1e-3)
    finally:
        close_engine()
