"""Fine-tuning data and evaluation: real demo-shop frames, local typed tools, a tiny real model."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Optional

import pandas as pd
import pytest

from finetune import evaluate, sft_data
from finetune.eval_llm import normalize_arguments, tool_defaults
from finetune.sft_tokens import read_sft_file
from finetune.sft_tools import tool_schema


def _events() -> pd.DataFrame:
    """A small hand-checkable shop: u1 buys often, u2 stopped, u3 starts late, u4..u40 filler."""
    rows = []
    for day in range(0, 150, 5):  # u1 buys every 5 days through the whole span
        rows.append(("u1", datetime(2026, 1, 1) + pd.Timedelta(days=day), "buy", "i1", "coffee", 1, 10.0))
    rows.append(("u2", datetime(2026, 1, 3), "view", "i2", "tea", 1, None))
    rows.append(("u2", datetime(2026, 1, 4), "buy", "i2", "tea", 2, 8.0))
    rows.append(("u3", datetime(2026, 5, 20), "buy", "i3", "snacks", 1, 3.5))
    for n in range(4, 41):
        for day in range(n % 7, 150, 3 + n % 11):
            rows.append((f"u{n}", datetime(2026, 1, 1) + pd.Timedelta(days=day, hours=n % 5),
                         "buy" if day % 2 else "view", f"i{n % 9}", ["coffee", "tea", "snacks"][n % 3], 1, 4.0))
    return pd.DataFrame(rows, columns=["user_id", "ts", "behavior", "item_id", "category_id", "quantity", "amount"])


def at_risk_users(horizon_days: int = 7, top_k: int = 10, segment: Optional[str] = None) -> dict:
    """List the customers most likely to churn within the horizon.

    Args:
        horizon_days: Days ahead; 7 means this week.
        top_k: How many users to return.
        segment: Only this segment.
    """
    return {"horizon_days": horizon_days, "as_of": "2026-04-01",
            "users": [{"user_id": f"u{i}", "p_churn": round(0.9 - 0.05 * i, 2)} for i in range(1, top_k + 1)]}


def user_history(user_id: str, last_n: int = 10) -> dict:
    """Show a user's most recent events.

    Args:
        user_id: The user's id.
        last_n: How many events.
    """
    return {"user_id": user_id, "totals": {"orders": 12, "spend": 99.5, "days_since_last_buy": 4},
            "events": [{"ts": "2026-03-30", "behavior": "buy", "item_id": "i1"}][:last_n]}


TOOLS = [at_risk_users, user_history]


def _args(tmp_path, **over) -> sft_data.SFTArgs:
    values = dict(out_dir=str(tmp_path), demo_users=1, train_cutoffs=["2026-03-01", "2026-04-01"],
                  eval_cutoff="2026-05-01", horizon_days=30, n_churn_train=20, n_churn_eval=12, n_tool_train=8,
                  n_tool_eval=6, eval_user_share=0.3, serializer="local")
    values.update(over)
    return sft_data.SFTArgs(**values)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("sft")
    args = _args(tmp)
    runner = lambda cutoff: (lambda name, arguments: {f.__name__: f for f in TOOLS}[name](**arguments))  # noqa: E731
    sets = sft_data.build(args, _events(), None, {"items": ["i1"], "categories": ["tea"], "segments": []},
                          TOOLS, run_tool_at=runner)
    for name, rows in sets.items():
        sft_data.write_jsonl(tmp / f"{name}.jsonl", rows)
    return tmp, sets


def test_train_and_heldout_differ_in_cutoff_and_user(built):
    _, sets = built
    train_churn = [e["meta"] for e in sets["train"] if e["meta"]["kind"] == "churn"]
    held = [e["meta"] for e in sets["eval_churn"]]
    assert train_churn and held
    assert {m["cutoff"][:10] for m in train_churn} == {"2026-03-01", "2026-04-01"}
    assert {m["cutoff"][:10] for m in held} == {"2026-05-01"}
    assert not {m["user_id"] for m in train_churn} & {m["user_id"] for m in held}


def test_churn_labels_and_answers_follow_the_truth(built):
    _, sets = built
    examples = {(e["meta"]["user_id"], e["meta"]["cutoff"][:10]): e for e in sets["train"] + sets["eval_churn"]
                if e["meta"]["kind"] == "churn"}
    for (user, _cutoff), example in examples.items():
        answer = example["messages"][-1]["content"]
        assert answer.split("\n")[0] == ("yes" if example["meta"]["label"] else "no")
        if user == "u1":  # buys every 5 days: never churns in 30 days
            assert example["meta"]["label"] == 0
        if user == "u2":  # last buy in January
            assert example["meta"]["label"] == 1
            assert "days_since_last_buy: " in example["messages"][0]["content"]
    # the prompt never shows an event after the cutoff
    for example in sets["eval_churn"]:
        shown = [line[:10] for line in example["messages"][0]["content"].splitlines() if line[:4] == "2026"]
        assert all(day <= example["meta"]["cutoff"][:10] for day in shown)


def test_tool_examples_call_right_tool_and_ground_answer(built):
    from assistant.agent.grounding import Evidence, check

    _, sets = built
    tool_train = [e for e in sets["train"] if e["meta"]["kind"] == "tool"]
    assert len(tool_train) == 8 and len(sets["eval_tools"]) == 6
    for example in tool_train + sets["eval_tools"]:
        call = example["messages"][2]["tool_calls"][0]["function"]
        assert [call] == example["meta"]["expected_calls"]
        names = [t["function"]["name"] for t in example["tools"]]
        assert call["name"] in names and names == [n for n in ("at_risk_users", "user_history") if n in names]
        result = json.loads(example["messages"][3]["content"])
        answer = example["messages"][4]["content"]
        report = check(answer, Evidence.from_results([result], extra_texts=[example["messages"][1]["content"]]))
        assert report.claims and report.ok, report.ungrounded
    # held-out questions use phrasings never seen in training
    train_q = {e["messages"][1]["content"] for e in tool_train}
    assert not train_q & {e["messages"][1]["content"] for e in sets["eval_tools"]}


def test_schemas_come_from_the_functions():
    schema = tool_schema(at_risk_users)
    assert schema["function"]["name"] == "at_risk_users"
    assert schema["function"]["parameters"]["properties"]["top_k"]["type"] == "integer"
    assert schema["function"]["description"] == "List the customers most likely to churn within the horizon."


def test_files_are_valid_sft_files(built):
    tmp, sets = built
    for name in ("train", "eval", "eval_churn", "eval_tools"):
        assert len(read_sft_file(tmp / f"{name}.jsonl")) == len(sets[name])


def test_bad_arguments_are_refused(tmp_path):
    with pytest.raises(ValueError, match="also a train cutoff"):
        _args(tmp_path, eval_cutoff="2026-04-01")
    with pytest.raises(ValueError, match="reach past --eval_cutoff"):
        _args(tmp_path, train_cutoffs=["2026-04-15"])
    with pytest.raises(ValueError, match="exactly one data source"):
        _args(tmp_path, demo_users=None)


def test_argument_normalization():
    defaults = tool_defaults(TOOLS)
    assert normalize_arguments("at_risk_users", {"horizon_days": "7", "top_k": 10}, defaults) == {}
    assert normalize_arguments("at_risk_users", {"horizon_days": 30, "segment": None}, defaults) == \
        {"horizon_days": 30}
    assert normalize_arguments("user_history", {"user_id": "u1", "last_n": "5"}, defaults) == \
        {"user_id": "u1", "last_n": 5}


def test_evaluate_writes_benchmark_files_and_table(built, tmp_path):
    from finetune import lora
    from finetune.tiny import build_tiny_qwen2

    data, _ = built
    texts = [m.get("content") or "" for line in (data / "train.jsonl").read_text().splitlines()
             for m in json.loads(line)["messages"]]
    model = build_tiny_qwen2(tmp_path / "model", texts * 2, vocab_size=500)
    lora.cli(["--base_model", str(model), "--train_file", str(data / "train.jsonl"), "--out_dir",
              str(tmp_path / "run"), "--max_steps", "1", "--max_seq_len", "4096", "--num_threads", "2"])
    summary = evaluate.main(["--data_dir", str(data), "--base_model", str(model), "--adapter",
                             str(tmp_path / "run" / "final"), "--out_dir", str(tmp_path / "bench"),
                             "--max_tools", "1", "--max_grounding", "1", "--dtype", "fp32", "--num_threads", "2"])
    for name in ("llm_base", "llm_lora", "recency_days"):
        frame = pd.read_csv(tmp_path / "bench" / name / "churn__30d__20260501T000000Z.csv", dtype={"user_id": str})
        assert list(frame.columns) == ["user_id", "p_churn"] and len(frame) == summary["n_churn"]
        assert frame["p_churn"].between(0, 1).all()
    table = (tmp_path / "bench" / "llm_eval.md").read_text()
    assert "| metric | llm_base | llm_lora | recency_days |" in table and "tool-call accuracy" in table
    assert 0 <= summary["tool-call accuracy"]["llm_lora"] <= 1
    for routed in ("tool-call accuracy (router)", "tool-call accuracy (router + prior)"):
        assert routed in table and 0 <= summary[routed]["llm_base"] <= 1 and 0 <= summary[routed]["llm_lora"] <= 1

    def records_by_model() -> dict[str, int]:
        lines = (tmp_path / "bench" / "llm_eval_records.jsonl").read_text().splitlines()
        return pd.Series([json.loads(line)["model"] for line in lines]).value_counts().to_dict()

    first = records_by_model()
    assert first["llm_base"] > 0 and first["llm_lora"] > 0
    again = evaluate.main(["--data_dir", str(data), "--base_model", str(model), "--adapter",
                           str(tmp_path / "run" / "final"), "--out_dir", str(tmp_path / "bench"), "--variants", "lora",
                           "--max_tools", "1", "--max_grounding", "1", "--dtype", "fp32", "--num_threads", "2"])
    assert records_by_model() == first  # the LoRA's records replaced, not appended again; the base's kept
    assert again["tool-call accuracy"]["llm_base"] == summary["tool-call accuracy"]["llm_base"]

    other = build_tiny_qwen2(tmp_path / "other", ["something else"] * 30, seed=3, vocab_size=500)
    with pytest.raises(SystemExit, match="was trained on base model"):
        evaluate.main(["--data_dir", str(data), "--base_model", str(other), "--adapter",
                       str(tmp_path / "run" / "final"), "--out_dir", str(tmp_path / "b2"), "--dtype", "fp32"])


def test_routed_evaluation_checks_ids_in_the_shop_the_data_came_from(tmp_path):
    from finetune.sft_sources import shop_tools
    from tools.data.synth import generate_shop

    assert shop_tools(tmp_path) is None  # no manifest: the evaluation falls back to schema-only tools
    (tmp_path / "manifest.yaml").write_text(
        "args:\n  db: null\n  demo_users: 60\n  seed: 0\n  eval_cutoff: '2026-06-01'\n", encoding="utf-8")
    tools = {fn.__name__: fn for fn in shop_tools(tmp_path)}
    shop = generate_shop(n_users=60, seed=0, progress=False)  # the same seeded shop: the same ids
    early = shop.events[shop.events["ts"] <= pd.Timestamp("2026-06-01")]
    user, segment = str(early["user_id"].iloc[0]), str(shop.users["segment"].dropna().iloc[0])
    assert tools["user_history"].known_values["user_id"](user)
    assert not tools["user_history"].known_values["user_id"]("no_such_user")
    assert tools["at_risk_users"].known_values["segment"](segment)
    assert not tools["at_risk_users"].known_values["segment"]("last_month")


def test_tool_questions_name_only_users_the_shop_has_seen_by_the_cutoff(tmp_path):
    events = _events()
    late = pd.DataFrame([(f"late{n}", datetime(2026, 5, 20 + n % 5), "buy", "i1", "coffee", 1, 5.0) for n in range(40)],
                        columns=events.columns)  # as many users again, all first seen after every cutoff
    events = pd.concat([events, late], ignore_index=True)
    sets = sft_data.build(_args(tmp_path, n_churn_train=2, n_churn_eval=2, n_tool_train=40, n_tool_eval=30), events,
                          None, {"items": ["i1"], "categories": ["tea"], "segments": []}, TOOLS)
    asked = [(e["meta"]["cutoff"], call["arguments"]["user_id"]) for name in ("train", "eval_tools")
             for e in sets[name] if e["meta"]["kind"] == "tool"
             for call in e["meta"]["expected_calls"] if "user_id" in call["arguments"]]
    assert len(asked) >= 10
    for cutoff, user in asked:
        assert (events.loc[events["user_id"] == user, "ts"] <= pd.Timestamp(cutoff)).any(), (user, cutoff)


def test_cutoffs_come_from_the_store_span_and_windows_past_the_data_are_refused(tmp_path):
    # A store of another era (CDNOW is 1997-1998) asked at the demo's 2026 cutoffs labelled every user "churned".
    events = _events()
    events["ts"] = events["ts"] - pd.Timedelta(days=365 * 29)  # the same shop in 1997
    store_args = sft_data.SFTArgs(out_dir=str(tmp_path), db="shop.duckdb", n_churn_train=20, n_churn_eval=12,
                                  n_tool_train=0, n_tool_eval=0, serializer="local")
    resolved = sft_data.resolve_cutoffs(store_args, events)
    last_day = events["ts"].max().normalize()
    assert pd.Timestamp(resolved.eval_cutoff) == last_day + pd.Timedelta(days=1 - 30)
    assert [pd.Timestamp(c) for c in resolved.train_cutoffs] == \
        [pd.Timestamp(resolved.eval_cutoff) - pd.Timedelta(days=d) for d in (60, 30)]
    sets = sft_data.build(store_args, events, None, {"items": [], "categories": [], "segments": []}, TOOLS)
    labels = [e["meta"]["label"] for e in sets["eval_churn"]]
    assert 0 < sum(labels) < len(labels)  # both outcomes: the labels come from inside the data
    with pytest.raises(ValueError, match=r"cutoff 2026-06-01: its 30-day label window ends 2026-07-01, after the data"):
        sft_data.resolve_cutoffs(replace(store_args, eval_cutoff="2026-06-01", train_cutoffs=["1997-03-01"]), events)
    with pytest.raises(ValueError, match="not after the first event"):
        sft_data.resolve_cutoffs(replace(store_args, eval_cutoff="1997-03-01", train_cutoffs=["1990-01-01"]), events)
    half_year = events.iloc[:2].assign(ts=[datetime(2026, 1, 1), datetime(2026, 6, 30, 18)])  # the demo's span
    demo = sft_data.resolve_cutoffs(_args(tmp_path, train_cutoffs=None, eval_cutoff=None), half_year)
    assert (demo.train_cutoffs, demo.eval_cutoff) == (["2026-04-01", "2026-05-01"], "2026-06-01")


def test_local_history_of_a_shop_without_categories_has_no_placeholder():
    events = _events().query("user_id == 'u2'").assign(category_id=None)
    assert sft_data.local_serialize(events) == "01-04 buy\n01-03 view"
    assert sft_data.local_serialize(_events().query("user_id == 'u2'")) == "01-04 buy tea\n01-03 view tea"


def test_a_shop_without_categories_or_segments_gets_no_questions_about_them():
    from finetune.sft_tools import ShopValues, load_bank, sample_questions

    bank = load_bank()
    bare = ShopValues(users=["00001", "00002"], items=["cd"])  # CDNOW: no categories, no segment labels
    asked = sample_questions(bank, "train", bare, 200, seed=0) + sample_questions(bank, "heldout", bare, 100, seed=1)
    assert len(asked) >= 100
    assert not [q["question"] for q in asked if "categor" in q["question"].lower()]
    groupings = {c["arguments"].get("segment_by") for q in asked for c in q["calls"]} - {None}
    assert groupings and groupings <= {"value_band", "tenure"}
    full = ShopValues(users=["u1"], items=["i1"], categories=["tea"], segments=["loyal"])
    asked = sample_questions(bank, "train", full, 300, seed=0)
    assert any("categor" in q["question"].lower() for q in asked)
    assert {"segment", "first_category"} <= {c["arguments"].get("segment_by") for q in asked for c in q["calls"]}


def test_spend_of_a_shop_without_prices_is_not_recorded_rather_than_zero():
    events = _events().query("user_id == 'u1'")
    assert sft_data.rfm_facts(events, datetime(2026, 6, 1))["spend"] == 300.0  # 30 purchases of 10.0
    unpriced = sft_data.rfm_facts(events.assign(amount=None), datetime(2026, 6, 1))
    assert unpriced["spend"] == "not recorded" and unpriced["orders"] == 30


def test_main_on_a_real_store_names_its_cutoffs_and_refuses_a_wrong_predictor_or_a_late_cutoff(tmp_path, capsys):
    from tools.data.store import EventStore

    events = _events()
    events["ts"] = events["ts"] - pd.Timedelta(days=365 * 29)  # a shop of 1997, like CDNOW
    db = tmp_path / "shop.duckdb"
    store = EventStore(db)
    store.import_frames("test", events=events.assign(amount=None, category_id=None))  # no prices, no categories
    store.close()
    common = ["--out_dir", str(tmp_path / "sft"), "--db", str(db), "--n_churn_train", "8", "--n_churn_eval", "6",
              "--n_tool_train", "6", "--n_tool_eval", "4", "--serializer", "local",
              "--max_seq_len", "0"]  # tool examples whole: no packaged tokenizer needed (tests/test_sft_tools_fit.py)
    manifest = sft_data.main(common)
    out = capsys.readouterr().out
    assert f"train cutoffs {manifest['args']['train_cutoffs'][0]}" in out and "held-out churn examples at" in out
    assert manifest["args"]["eval_cutoff"].startswith("1997-")
    rows = [json.loads(line) for line in (tmp_path / "sft" / "train.jsonl").read_text().splitlines()]
    churn = [r["messages"][0]["content"] for r in rows if r["meta"]["kind"] == "churn"]
    asked = [r["messages"][1]["content"] for r in rows if r["meta"]["kind"] == "tool"]
    assert churn and all("- spend: not recorded" in p or "- orders: 0" in p for p in churn)
    assert asked and not [q for q in asked if "categor" in q.lower()]
    with pytest.raises(SystemExit, match=r"^--predictor: .*nope: no predictor checkpoint here"):
        sft_data.main(common + ["--predictor", str(tmp_path / "nope")])
    with pytest.raises(SystemExit, match=r"cutoff 2026-06-01: its 30-day label window ends 2026-07-01, after the data"):
        sft_data.main(common + ["--eval_cutoff", "2026-06-01"])


def test_a_tool_result_is_trained_in_the_form_the_agent_serves_it():
    from assistant.agent.untrusted import result_for_prompt, sanitize_result
    from finetune.sft_tools import assemble, result_turns

    result = {"item_id": "book3", "n_reviews": 2,
              "quotes": [{"review_id": "r1", "text": "印刷质量极差，请联系 zhang.wei@example.com"}]}
    question = {"question": "Summarize the reviews of item book3.",
                "calls": [{"name": "review_summary", "arguments": {"item_id": "book3"}}]}
    turns = result_turns(question, lambda name, arguments: result,
                         lambda tool, arguments, res: f"{res['n_reviews']} reviews: {res['quotes'][0]['text']}")
    example = assemble(question, [], "system", turns, {})
    tool_message, answer = example["messages"][3]["content"], example["messages"][4]["content"]
    assert tool_message == result_for_prompt(sanitize_result(result)[0])  # what assistant/agent/loop.py shows
    assert "«印刷质量极差，请联系 [EMAIL]»" in tool_message and '", "' not in tool_message
    assert answer == "2 reviews: «印刷质量极差，请联系 [EMAIL]»" and "example.com" not in answer


def test_balanced_churn_examples_fill_both_halves_when_retained_users_are_rare(tmp_path):
    # 38 users stop before the cutoff, 2 keep buying: a 4x sample found too few retained ones and gave fewer examples.
    rows = [(f"u{n}", datetime(2026, 1, 1) + pd.Timedelta(days=n), "buy", "i1", "tea", 1, 2.0) for n in range(38)]
    rows += [(user, datetime(2026, 1, 5) + pd.Timedelta(days=d), "buy", "i1", "tea", 1, 2.0)
             for user in ("keep1", "keep2") for d in range(0, 150, 7)]
    events = pd.DataFrame(rows, columns=_events().columns)
    args = _args(tmp_path, n_churn_train=4, n_churn_eval=2, n_tool_train=0, n_tool_eval=0, eval_user_share=0.05)
    sets = sft_data.build(args, events, None, {"items": ["i1"], "categories": ["tea"], "segments": []}, TOOLS)
    train = [e for e in sets["train"] if e["meta"]["kind"] == "churn"]
    train_users = {e["meta"]["user_id"] for e in train}
    assert len(train) == 4 and sorted(e["meta"]["label"] for e in train) == [0, 0, 1, 1], train_users
    for e in train:
        assert e["meta"]["label"] == int(e["meta"]["user_id"] not in
                                         sft_data.buyers_within(events, e["meta"]["cutoff"][:10], 30))


def test_a_store_held_by_another_process_is_a_one_line_refusal(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from tools.data.store import EventStore

    db = tmp_path / "shop.duckdb"
    with EventStore(db) as store:
        store.import_frames("test", events=_events())
    holder_code = ("import sys; from tools.data.store import EventStore; store = EventStore(sys.argv[1]); "
                   "print('ready', flush=True); sys.stdin.read()")  # a running `shopsight app` keeps it so
    root = Path(__file__).resolve().parents[1]
    holder = subprocess.Popen([sys.executable, "-c", holder_code, str(db)], cwd=root, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(SystemExit, match=rf"^--db {db}: the event store .* is held .* by process {holder.pid}"):
            sft_data.main(["--out_dir", str(tmp_path / "sft"), "--db", str(db)])
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def test_review_questions_ask_about_reviewed_items():
    from finetune.sft_sources import slot_values

    events = _events()  # bought items i0..i8
    reviews = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["book3", "i1"], "ts": [datetime(2026, 2, 1)] * 2,
                            "rating": [5, 1], "text": ["好", "差"]})
    assert slot_values(events, None, reviews)["items"] == ["book3", "i1"]
    assert slot_values(events, None, None)["items"] == sorted(events.loc[events["behavior"] == "buy", "item_id"].unique())


def test_a_shop_without_categories_is_not_asked_or_told_a_next_category(tmp_path):
    """CDNOW records no categories: every answer said "Next category: none expected" (new-user trial, Round 9)."""
    events = _events()
    args = _args(tmp_path, n_churn_train=6, n_churn_eval=4, n_tool_train=0, n_tool_eval=0)
    plain = sft_data.build(args, events.assign(category_id=None), None,
                           {"items": ["i1"], "categories": [], "segments": []}, TOOLS)
    churn = [e for e in plain["train"] + plain["eval_churn"] if e["meta"]["kind"] == "churn"]
    assert churn
    for example in churn:
        question, answer = (m["content"] for m in example["messages"])
        assert "category" not in question and "category" not in answer.lower(), (question, answer)
        assert question.endswith("Answer yes or no, then why.") and answer.split("\n")[1].startswith("Why: ")
    with_categories = sft_data.build(args, events, None, {"items": ["i1"], "categories": ["coffee", "tea", "snacks"],
                                                          "segments": []}, TOOLS)
    example = next(e for e in with_categories["train"] if e["meta"]["kind"] == "churn")
    question, answer = (m["content"] for m in example["messages"])
    assert "then the next category and why" in question and "- top_category: " in question
    assert answer.split("\n")[1].startswith("Next category: ")


def test_a_tool_answer_on_a_shop_without_prices_says_spend_not_recorded(tmp_path):
    """The Instacart sample has no prices: the trained answers said "spend None" (new-user trial, Round 9)."""
    from assistant.prompts import render
    from finetune.sft_sources import load_source
    from tools.data.store import EventStore

    db = tmp_path / "shop.duckdb"
    with EventStore(db) as store:
        store.import_frames("test", events=_events().assign(amount=None))
    source = load_source(_args(tmp_path, db=str(db), demo_users=None))
    run = source.run_tool_at(datetime(2026, 5, 1))
    for tool in ("user_history", "explain_user"):
        result = run(tool, {"user_id": "u1"})
        answer = render("finetune_tool_answer", tool=tool, args={"user_id": "u1"}, result=result)
        assert "None" not in answer, answer
    history = run("user_history", {"user_id": "u1"})
    assert history["totals"]["spend"] is None  # what the tool says without prices
    assert "orders, spend not recorded, last purchase" in render("finetune_tool_answer", tool="user_history",
                                                                 args={"user_id": "u1"}, result=history)
