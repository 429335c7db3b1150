"""Tool examples built to fit a LoRA recipe's max_seq_len: a tokenizer trained here, local typed tools, real DuckDB.

On a real shop (CDNOW) every tool example was longer than the CPU recipes' 768 tokens, so `finetune.lora`
dropped them all and the adapter never trained on a tool (bench/results/new_user_trial.md, Round 9f).
"""

from __future__ import annotations

import json
from typing import Optional

import pytest

from finetune import sft_data
from finetune.sft_tokens import tokenize_example, tokenize_file
from finetune.tiny import train_tokenizer
from tests.test_finetune_data import _args, _events, user_history

REASON = "ten days since the last order, a little past the usual seven-day gap, and the basket got smaller"


def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None) -> dict:
    """List the customers most likely to churn within the horizon.

    Args:
        horizon_days: Days ahead; 7 means this week.
        top_k: How many users to return.
        segment: Only this segment.
    """
    # Rows as long as a real shop's (stage, reasons): the result alone is longer than the recipe allows.
    return {"horizon_days": horizon_days, "as_of": "2026-04-01",
            "users": [{"user_id": f"u{i}", "p_churn": round(0.9 - 0.05 * i, 2), "reasons": [REASON] * 4}
                      for i in range(1, top_k + 1)]}


TOOLS = [at_risk_users, user_history]
VALUES = {"items": ["i1"], "categories": ["tea"], "segments": []}


def _run(cutoff):
    return lambda name, arguments: {f.__name__: f for f in TOOLS}[name](**arguments)


@pytest.fixture(scope="module")
def tokenizer():
    corpus = [REASON, "List the customers most likely to churn within the horizon.", "Show a user's most recent events",
              "user_id p_churn horizon_days as_of users totals orders spend events behavior item_id"] * 20
    return train_tokenizer(corpus, vocab_size=500)


def _build(tmp_path, tokenizer, max_seq_len):
    args = _args(tmp_path, n_tool_train=40, n_tool_eval=6, max_seq_len=max_seq_len)
    return sft_data.build(args, _events(), None, VALUES, TOOLS, run_tool_at=_run, fit_tokenizer=tokenizer)


def test_tool_examples_fit_max_seq_len_whole_or_as_the_call_never_cut(tmp_path, tokenizer):
    whole = _build(tmp_path, None, 768)  # no tokenizer: every example whole, as before
    whole_tools = [e for e in whole["train"] if e["meta"]["kind"] == "tool"]
    length = {id(e): len(tokenize_example(tokenizer, e).input_ids) for e in whole_tools}
    by_tool = lambda rows, tool: [e for e in rows if e["meta"]["expected_calls"][0]["name"] == tool]  # noqa: E731
    # the recipe's limit: every history example fits whole, no at-risk example does
    limit = max(length[id(e)] for e in by_tool(whole_tools, "user_history"))
    assert min(length[id(e)] for e in by_tool(whole_tools, "at_risk_users")) > limit

    sets = _build(tmp_path, tokenizer, limit)
    tools = [e for e in sets["train"] if e["meta"]["kind"] == "tool"]
    assert len(tools) == len(whole_tools) == 40  # none left out: the call alone always fits here
    for example in tools:
        assert len(tokenize_example(tokenizer, example).input_ids) == example["meta"]["tokens"] <= limit
        call = example["messages"][2]["tool_calls"][0]["function"]
        assert [call] == example["meta"]["expected_calls"]
        if call["name"] == "user_history":  # fits: trained with its whole result and the grounded answer
            assert example["meta"]["fit"] == "result" and len(example["messages"]) == 5
            result = json.loads(example["messages"][3]["content"])  # whole JSON, as the agent serves it
            assert result == user_history(**call["arguments"])
            assert str(result["totals"]["orders"]) in example["messages"][4]["content"]
        else:  # too long with its result: the question and the right call, nothing cut
            assert example["meta"]["fit"] == "call only" and len(example["messages"]) == 3
            assert [t["function"]["name"] for t in example["tools"]] == ["at_risk_users", "user_history"]
    assert sorted((r["tool"], r["fit"]) for r in sets["tool_fit"]) == \
        sorted((e["meta"]["expected_calls"][0]["name"], e["meta"]["fit"]) for e in tools)
    # held-out files: eval_tools.jsonl whole (generation sees every tool); eval.jsonl's tool part fits
    assert all(len(e["messages"]) == 5 for e in sets["eval_tools"])
    assert all(len(tokenize_example(tokenizer, e).input_ids) <= limit
               for e in sets["eval"] if e["meta"]["kind"] == "tool")
    # what finetune.lora reads: nothing dropped as too long
    sft_data.write_jsonl(tmp_path / "train.jsonl", sets["train"])
    kept, too_long = tokenize_file(tokenizer, tmp_path / "train.jsonl", limit)
    assert not too_long and len(kept) == len(sets["train"])
    line = sft_data.describe_fit(sets["tool_fit"], limit)
    n_risk = len(by_tool(tools, "at_risk_users"))
    assert f"at_risk_users 0 with result, {n_risk} call only" in line and "--max_seq_len" in line


def test_main_on_a_real_store_fits_tool_examples_with_the_named_tokenizer(tmp_path, tokenizer, capsys):
    """Real DuckDB and the real tools: without a predictor at_risk_users cannot answer, user_history can."""
    from tools.data.store import EventStore

    db = tmp_path / "shop.duckdb"
    with EventStore(db) as store:
        store.import_frames("test", events=_events())
    tokenizer.save_pretrained(tmp_path / "tok")
    common = ["--out_dir", str(tmp_path / "sft"), "--db", str(db), "--n_churn_train", "4", "--n_churn_eval", "4",
              "--n_tool_train", "60", "--n_tool_eval", "4", "--serializer", "local",
              "--tokenizer", str(tmp_path / "tok")]  # 60: the bank's at-risk and explain phrasings come first
    manifest = sft_data.main(common + ["--max_seq_len", "100000"])
    fit = manifest["tool_fit"]  # nothing too long; at_risk_users cannot answer without a predictor
    assert fit["with_result"] >= 1 and fit["no_result"] >= 1 and fit["call_only"] == fit["left_out"] == 0
    rows = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").read_text().splitlines()]
    longest = max(len(tokenize_example(tokenizer, r).input_ids) for r in rows if r["meta"]["kind"] == "tool"
                  and r["meta"]["fit"] == "result")
    manifest = sft_data.main(common + ["--max_seq_len", str(longest - 1)])
    out = capsys.readouterr().out
    assert f"tool-use examples for training within {longest - 1} tokens:" in out
    assert manifest["tool_fit"]["max_seq_len"] == longest - 1
    rows = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").read_text().splitlines()]
    # the longest one shows fewer other tools, or trains its call only
    fitted = [r for r in rows if r["meta"]["kind"] == "tool" and r["meta"]["fit"] == "result"]
    assert manifest["tool_fit"]["call_only"] >= 1 or any(len(r["tools"]) < 3 for r in fitted)
    kept, too_long = tokenize_file(tokenizer, tmp_path / "sft" / "train.jsonl", longest - 1)
    assert [kind for kind, _ in too_long if kind == "tool"] == []


def test_a_tokenizer_that_is_not_there_is_a_one_line_refusal_with_the_fix(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match=r"^--tokenizer nope: neither a folder nor an installed model .*"
                                         r"--max_seq_len 0 to keep tool examples whole"):
        sft_data.tokenizer_folder("nope")
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))  # an empty home: the packaged model is not converted there
    with pytest.raises(SystemExit, match=r"shopsight models install --transformers qwen2.5-coder-0.5b"):
        sft_data.tokenizer_folder("qwen2.5-coder-0.5b")
    assert not (tmp_path / "models" / "qwen2.5-coder-0.5b").exists()  # and not converted as a side effect
