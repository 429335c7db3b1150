"""The Workspace facade over a real small stack: demo shop, tiny predictor, Chroma, scripted chat model."""

from __future__ import annotations

import shutil
from dataclasses import replace

import pandas as pd
import pytest

from app_shop import scripted_analyst, stack_in_home
from assistant.workspace import PartUnavailable, Workspace


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    with stack_in_home(home, n_users=150) as parts:
        yield parts


@pytest.fixture(scope="module")
def ws(stack):
    chat = scripted_analyst()
    return Workspace.open(stack["settings"], store=stack["store"], chat_model_factory=lambda: chat,
                          predictor=stack["predictor"], cases=stack["cases"], reviews=stack["reviews"])


def test_open_with_every_part_reports_no_problem(ws, stack):
    assert ws.problems == {}
    assert ws.cutoff == stack["cutoff"]
    info = ws.summary()
    assert info["tables"]["events"] == len(stack["shop"].events)
    assert info["predictor"].startswith(stack["predictor"].version)
    assert info["case_memory"]["cases"] == stack["cases"].info()["text_cases"] > 0
    assert info["llm_state"] == "loads on the first question"  # nothing loaded at open


def test_open_from_the_home_folder_loads_the_trained_predictor(stack):
    ws = Workspace.open(stack["settings"], store=stack["store"], cases=stack["cases"],
                        chat_model_factory=lambda: None)
    assert ws.predictor is not None and ws.predictor.version == stack["predictor"].version
    assert "predictor" not in ws.problems
    # Loaded on first use (torch is imported then, not at open): the horizons come from its config.
    assert not ws.predictor.part_loaded and ws.predictor.horizons_days == stack["predictor"].horizons_days
    events = stack["store"].events_frame()
    scored = ws.predictor.score_users(events, ws.cutoff, users=[str(events["user_id"].iloc[0])])
    assert ws.predictor.part_loaded and len(scored)


def test_the_headline_question_reads_stored_scores_without_loading_the_predictor(stack):
    """score_store writes each horizon's scores a horizon back too: at_risk_users recalibrates P(lapse)
    on them, so a cold churn question never imports torch (bench/cold_ask.py)."""
    ws = Workspace.open(stack["settings"], store=stack["store"], cases=stack["cases"],
                        chat_model_factory=lambda: None)
    result = ws.call_tool("at_risk_users", horizon_days=7)
    # This small shop has too few lapses to fit the map on; the rows a week back were still found.
    assert result["users"] and "no churn scores" not in result["p_lapse_calibration"], result
    assert not ws.predictor.part_loaded


def test_a_broken_predictor_is_reported_where_it_is_used(stack, tmp_path):
    from tools.predictor.data import PredictorError

    settings = replace(stack["settings"], models_dir=tmp_path)
    shutil.copytree(stack["settings"].predictor_dir, settings.predictor_dir)
    (settings.predictor_dir / "model.safetensors").write_bytes(b"not a checkpoint")
    ws = Workspace.open(settings, store=stack["store"], cases=stack["cases"], chat_model_factory=lambda: None)
    with pytest.raises(PredictorError, match="model.safetensors|checkpoint"):
        ws.predictor.score_users(stack["store"].events_frame(), ws.cutoff)


def test_missing_predictor_and_model_say_what_to_run(stack):
    settings = replace(stack["settings"], predictor="never-trained", model="/no/such/model")
    ws = Workspace.open(settings, store=stack["store"], cases=stack["cases"])
    assert "shopsight predictor train" in ws.problems["predictor"]
    assert "SHOPSIGHT_MODEL" in ws.problems["llm"]
    result = ws.call_tool("explain_user", user_id=str(stack["shop"].users["user_id"].iloc[0]))
    assert "error" in result and "train" in (result["error"] + result.get("hint", ""))
    with pytest.raises(PartUnavailable, match="shopsight models install"):
        list(ws.run_agent("Which users will churn this week?"))
    assert ws.summary()["llm_state"] == "not available"


def test_chat_model_failing_to_load_is_reported_not_raised_raw(stack):
    def broken():
        raise OSError("weights file truncated")

    ws = Workspace.open(stack["settings"], store=stack["store"], predictor=stack["predictor"],
                        cases=stack["cases"], chat_model_factory=broken)
    with pytest.raises(PartUnavailable, match="weights file truncated.*shopsight models install"):
        ws.chat_model()
    assert "llm" in ws.problems


def test_agent_answers_through_the_real_tools(ws):
    events = list(ws.run_agent("Which users will churn this week, and why?"))
    kinds = [e.type for e in events]
    assert kinds.count("tool_call") == 1 and kinds[-1] == "answer"
    top = next(e for e in events if e.type == "tool_result").get("result")["users"][0]
    answer = events[-1]
    assert f"user {top['user_id']}" in answer.get("text")
    assert {"kind": "user", "id": top["user_id"], "tool": "at_risk_users"} in answer.get("citations")
    assert ws.chat_model_loaded


def test_churn_over_cutoffs_matches_the_scores_table(ws, stack):
    top = ws.call_tool("at_risk_users", horizon_days=7, top_k=3)["users"][0]
    trend = ws.churn_over_cutoffs(top["user_id"], 7)
    assert 1 <= len(trend) <= 12 and trend["cutoff"].is_monotonic_increasing
    assert trend["p_churn"].between(0, 1).all()
    assert trend["cutoff"].iloc[-1] == pd.Timestamp(ws.cutoff)
    assert trend["p_churn"].iloc[-1] == pytest.approx(top["p_churn"], abs=2e-3)  # same model, same cutoff
    with pytest.raises(PartUnavailable, match="unknown user id 'nobody'"):
        ws.churn_over_cutoffs("nobody", 7)


def test_review_timeline_and_search(ws, stack):
    category = stack["shop"].reviews.merge(stack["shop"].items, on="item_id")["category_id"].mode()[0]
    timeline = ws.review_timeline(category_id=category)
    assert set(timeline.columns) == {"month", "sentiment", "share", "reviews"}
    assert timeline.groupby("month")["share"].sum().round(6).eq(1).all()
    choices = ws.search_items(category[:4])
    assert choices[0][1].startswith("category:")
    assert any(value == f"category:{category}" for _, value in choices)
    assert ws.search_items("zzz-no-such-thing") == []


def test_cited_review_and_case_are_looked_up_by_id(ws, stack):
    review = stack["shop"].reviews.iloc[5]
    found = ws.review(str(review["review_id"]))
    assert (found["user_id"], found["item_id"], found["rating"]) == (str(review["user_id"]), str(review["item_id"]),
                                                                     int(review["rating"]))
    item = stack["shop"].items.set_index("item_id").loc[review["item_id"]]
    assert found["category_id"] == item["category_id"]  # the desk can open its category too
    with pytest.raises(PartUnavailable, match="unknown review id 'R-none'"):
        ws.review("R-none")
    similar = ws.call_tool("similar_cases", user_id=str(review["user_id"]), k=1)["cases"][0]
    case = ws.case(similar["case_id"])
    assert case["text"] == similar["summary"] and case["metadata"]["user_id"] == similar["user_id"]
    with pytest.raises(PartUnavailable, match="unknown case id 'nope'"):
        ws.case("nope")


def test_save_case_checks_input_and_is_found_again(ws, stack):
    user = str(stack["shop"].users["user_id"].iloc[3])
    with pytest.raises(PartUnavailable, match="conclusion"):
        ws.save_case(user, 7, "  ", "retained")
    with pytest.raises(PartUnavailable, match="unknown user id"):
        ws.save_case("nobody", 7, "late deliveries", "retained")
    case_id = ws.save_case(user, 7, "Complained twice about late deliveries of cat litter", "retained after voucher")
    assert case_id.startswith("analyst:")
    found = ws.cases.search_text("late deliveries of cat litter", k=3)["cases"]
    assert found[0]["case_id"] == case_id and found[0]["outcome"] == "retained after voucher"


def test_import_upload_reports_rejected_rows_and_refuses_other_formats(ws, tmp_path):
    before = ws.store.summary()["tables"]["events"]
    sheet = tmp_path / "events.xlsx"
    sheet.write_bytes(b"PK\x03\x04 zip")
    with pytest.raises(PartUnavailable, match="'.xlsx' is not a supported format"):
        ws.import_upload(str(sheet))
    bad = tmp_path / "rr.csv"
    bad.write_text("timestamp,visitorid,event,itemid,transactionid\n1433221332117,257597,view,355908,\n"
                   "1433221955914,483717,click,253185,\n")
    report = ws.import_upload(str(bad))
    assert (report["rows_read"], report["rows_imported"], report["rows_rejected"]) == (2, 1, 1)
    assert report["rejected"][0]["line"] == 3 and report["rejected"][0]["field"] == "event"
    assert "click" in report["rejected"][0]["reason"]
    assert ws.store.summary()["tables"]["events"] == before + 1


def test_lazy_open_serves_the_store_first_and_loads_parts_on_first_use(stack):
    ws = Workspace.open(stack["settings"], store=stack["store"], cases=stack["cases"],
                        chat_model_factory=lambda: None, lazy=True)
    assert not ws.loaded and ws.segments()  # store-only views need nothing else
    assert ws.call_tool("at_risk_users", horizon_days=7, top_k=2)["users"]
    assert ws.loaded and ws.predictor.version == stack["predictor"].version


def test_a_part_being_built_shows_its_progress_and_loads_when_its_job_finishes(stack, tmp_path):
    import shutil

    from tools.jobs import Job, JobRunner

    settings = replace(stack["settings"], home=tmp_path, models_dir=tmp_path / "models")
    runner = JobRunner(tmp_path, [Job("predictor", "training the predictor", lambda: False, lambda r: None)],
                       echo=None)
    runner._update("predictor", status="running", fraction=0.4, eta_s=70)
    ws = Workspace.open(settings, store=stack["store"], cases=stack["cases"], chat_model_factory=lambda: None)
    assert ws.predictor is None
    assert ws.problems["predictor"] == "not ready yet: training the predictor, 40 %, about 70 s left"
    assert ws.summary()["jobs"] == {"predictor": "not ready yet: training the predictor, 40 %, about 70 s left"}
    # The job ends: its checkpoint is on disk, and the next use reloads the parts (no restart).
    shutil.copytree(stack["settings"].predictor_dir, settings.predictor_dir)
    runner._update("predictor", status="done", fraction=1.0)
    runner._finished("predictor")
    assert ws.predictor is not None and ws.predictor.version == stack["predictor"].version
    assert "predictor" not in ws.problems and ws.jobs() == {}
