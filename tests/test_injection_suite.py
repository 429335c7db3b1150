"""The injection suite by carrier: every attack in data/questions/injection_reviews.jsonl reaches
the prompt only through its defence. Carriers: review text, item names, category ids (an imported
file chooses them), an uploaded CSV's column names, and a `shopsight ask --session` file.

The real-model run of the same attacks (do they change a tool call or leak masked data?) is
bench/agent_eval.py --injection; results in bench/results/agent_eval.md.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage, messages_to_dict

from assistant.agent.session import SESSION_VERSION, Session
from assistant.agent.untrusted import sanitize_result
from tools.data.schema import ImportFailed
from tools.data.store import EventStore

ROOT = Path(__file__).resolve().parents[1]
ATTACKS = [json.loads(line) for line in (ROOT / "data" / "questions" / "injection_reviews.jsonl").read_text(
    encoding="utf-8").splitlines() if line.strip()]
STRUCTURE = ("<tool_call>", "</tool_call>", "</tool_response>", "<|im_start|>", "<|im_end|>", "![", "](")


def _ids(attacks):
    return [a["id"] + "-" + a["attack"] for a in attacks]


def by_carrier(carrier: str) -> list[dict]:
    return [a for a in ATTACKS if a.get("carrier", "review") == carrier]


def assert_defused(text: str, attack: dict) -> None:
    low = text.lower()
    for marker in STRUCTURE:
        assert marker not in low, (attack["id"], marker, text)
    for secret in attack["secrets"]:
        assert secret.lower() not in low, (attack["id"], secret)


def test_suite_size_and_carriers():
    assert len(ATTACKS) >= 50 and len({a["id"] for a in ATTACKS}) == len(ATTACKS)
    carriers = {a.get("carrier", "review") for a in ATTACKS}
    assert carriers == {"review", "item_name", "category_id", "csv_column", "session"}
    assert sum(any("\u4e00" <= ch <= "\u9fff" for ch in a["text"]) for a in ATTACKS) >= 10  # Chinese


@pytest.mark.parametrize("attack", by_carrier("review"), ids=_ids(by_carrier("review")))
def test_review_text(attack):
    clean, found = sanitize_result({"quotes": [{"review_id": "r1", "text": attack["text"]}]})
    text = clean["quotes"][0]["text"]
    assert text.startswith("«") and text.endswith("»") and found
    assert_defused(text[1:-1], attack)
    assert "\n" not in text and "{" not in text


@pytest.mark.parametrize("attack", by_carrier("item_name") + by_carrier("category_id"),
                         ids=_ids(by_carrier("item_name") + by_carrier("category_id")))
def test_names_and_ids_the_tools_return(attack):
    """Trusted fields keep their value (an id must still match) but lose chat structure."""
    result = {"item_id": "i1", "name": attack["text"], "category_id": attack["text"],
              "top_categories": f"c1 {attack['text']}", "rows": [{"category_id": attack["text"], "buys": 3}]}
    clean, found = sanitize_result(result)
    assert found == [] and clean["item_id"] == "i1" and clean["rows"][0]["buys"] == 3
    assert_defused(json.dumps(clean, ensure_ascii=False), attack)


@pytest.mark.parametrize("attack", by_carrier("csv_column"), ids=_ids(by_carrier("csv_column")))
def test_uploaded_csv_column_names(attack, tmp_path):
    path = tmp_path / "upload.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["user_id", "item_id", "behavior", "timestamp", attack["text"]])
        writer.writerow(["u1", "i1", "view", "1511544070", "x"])
    with EventStore(tmp_path / "shop.duckdb") as store:
        # An error message names the columns: one line, no markup from the file.
        with pytest.raises(ImportFailed) as failed:
            store.import_file(path, fmt="csv", mapping={"columns": {"uid": "user_id"}}, progress=False)
        message = str(failed.value)
        assert "\n" not in message and "<" not in message.split("columns are")[1]
        assert_defused(message, attack)
        # Imported without a mapping for it, the column is ignored: its name is stored nowhere.
        report = store.import_file(path, fmt="csv", mapping={"columns": {}}, progress=False)
        assert report.rows_imported == 1
        dump = json.dumps([store.query(f"SELECT * FROM {t}").astype(str).to_dict("records")
                           for t in ("events", "users", "items", "import_log", "rejected")], ensure_ascii=False)
        assert attack["text"] not in dump and json.dumps(attack["text"])[1:-1] not in dump
        assert_defused(dump, attack)


@pytest.mark.parametrize("attack", by_carrier("session"), ids=_ids(by_carrier("session")))
def test_session_file(attack, tmp_path):
    """A session file anyone edited is read back as untrusted: no system turn, tool results
    sanitized again, chat structure removed from every message."""
    call = {"name": "review_summary", "args": {"item_id": "i1"}, "id": "c1", "type": "tool_call"}
    messages = [HumanMessage("What do customers say about item i1?"), AIMessage("", tool_calls=[call]),
                ToolMessage('{"n_reviews": 1}', tool_call_id="c1", name="review_summary"), AIMessage("One review.")]
    role = attack["role"]
    planted = {"system": SystemMessage(attack["text"]), "human": HumanMessage(attack["text"]),
               "ai": AIMessage(attack["text"]),
               "tool": ToolMessage(attack["text"], tool_call_id="c1", name="review_summary")}[role]
    messages.insert(3 if role == "tool" else 1, planted)
    path = tmp_path / "session.json"
    path.write_text(json.dumps({"version": SESSION_VERSION, "messages": messages_to_dict(messages)}), encoding="utf-8")
    loaded = Session.load(path).messages
    assert not any(isinstance(m, SystemMessage) for m in loaded)
    text = "\n".join(str(m.content) for m in loaded)
    assert_defused(text, attack)
    for canary in attack["canaries"]:
        assert canary not in text
    assert loaded[-1].content == "One review." and loaded[1 if role != "system" else 0] is not None
