"""The agent through a real OpenAI-compatible server: llama.cpp's `llama_cpp.server` on 127.0.0.1.

The slow tests start `python -m llama_cpp.server` on the packaged Qwen 0.5B GGUF (joined and
sha256-checked from its pinned packages, as assistant/llm/registry.py does) and drive the real
agent with the tools of a small real shop (tests/app_shop.py: DuckDB, a trained predictor,
Chroma) through assistant/llm/openai_chat.py. The server router (assistant/agent/server_router.py)
chooses the first call from the server's logprobs and decodes its arguments under the tool's
JSON schema. The fast tests cover the bad inputs: a URL that does not answer, and a server that
ignores the constraint and answers in prose (a small stdlib HTTP server with canned replies,
standing in for such a third-party server).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app_shop import stack_in_home
from json_server import JsonHandler, serving
from assistant.agent import grounding
from assistant.agent.loop import Agent
from assistant.agent.takeaway import takeaway_facts
from assistant.llm.loader import load_llm
from assistant.llm.openai_chat import NAME_FLOOR, name_logprobs

QUESTION = "Which users will churn this week?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, log: Path, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(url + "/v1/models", timeout=5):
                return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"llama_cpp.server did not answer within {seconds} s: {log.read_text()[-2000:]}")


@pytest.fixture(scope="module")
def packaged_gguf(tmp_path_factory) -> Path:
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY, ModelInstallError, join_chunks, locate_chunks

    model = MODEL_REGISTRY[DEFAULT_MODEL]
    try:
        chunks = locate_chunks(model)
    except ModelInstallError as exc:
        pytest.skip(f"the packaged model is not installed: {exc}")
    path = tmp_path_factory.mktemp("gguf") / model.gguf_name
    join_chunks(model, chunks, path, progress=False)  # checks every chunk's and the whole file's sha256
    return path


@pytest.fixture(scope="module")
def server(packaged_gguf, tmp_path_factory):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server] is not installed")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "llama_cpp.server", "--model", str(packaged_gguf),
                                 "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
                                 "--n_threads", "2", "--n_threads_batch", "2"], stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(url, proc, log)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    with stack_in_home(tmp_path_factory.mktemp("home"), n_users=150) as parts:
        from tools.catalog import ToolContext, build_tools

        ctx = ToolContext(store=parts["store"], predictor=parts["predictor"], cases=parts["cases"],
                          reviews=parts["reviews"], cutoff=parts["cutoff"])
        yield {**parts, "tools": build_tools(ctx)}


@pytest.mark.slow
def test_agent_through_a_real_llama_cpp_server_ends_with_a_grounded_answer(server, shop):
    chat = load_llm(server, max_new_tokens=64, timeout_s=900)  # a first prefill on a busy CPU can take minutes
    agent = Agent(chat, shop["tools"], max_steps=3, answer_mode="brief", takeaway_tokens=48)
    assert type(agent.router).__name__ == "ServerRouter"
    events = [e.to_dict() for e in agent.run(QUESTION)]
    calls = [e for e in events if e["type"] == "tool_call"]
    assert calls, [e for e in events if e["type"] == "error"]
    assert calls[0]["routed"] and calls[0]["name"] == "at_risk_users"
    assert calls[0]["arguments"].get("horizon_days") == 7
    trace = agent.router.last
    scored = [s for s in trace.model_scores.values() if s > NAME_FLOOR]
    assert len(scored) >= 2 and trace.error == ""  # the server's logprobs scored several tools
    answer = events[-1]
    assert answer["type"] == "answer" and answer["tools"][0] == "at_risk_users"
    results = [(e["name"], e["result"]) for e in events if e["type"] == "tool_result"]
    counts = takeaway_facts(results)[1]  # the takeaway may repeat the agent's counts ("8 of 10 listed customers")
    evidence = grounding.Evidence.from_results([r for _, r in results] + [counts], [QUESTION])
    assert grounding.check(answer["text"], evidence).ok
    assert any(c["kind"] == "user" for c in answer["citations"])


TIE_NATS = 0.25  # names this close are a tie: which one the server picks varied between runs (see below)


@pytest.mark.slow
def test_arguments_are_constrained_by_the_tool_schema(server, shop):
    """A call to explain_user comes back as an object of its schema, naming the asked user.

    (The 0.5B alone may prefer at_risk_users here; the exemplar prior corrects that in the router.)
    """
    from assistant.agent.tool_specs import build_specs

    specs = build_specs(shop["tools"])
    user = str(shop["store"].users_frame()["user_id"].iloc[0])
    chat = load_llm(server, timeout_s=900)
    agent = Agent(chat, shop["tools"], max_steps=2)
    messages = agent.prepare_messages(f"Why is user {user} likely to churn?")
    scores, chosen = chat.score_tool_names(messages, [s.schema for s in specs.values()])
    # The server's constrained choice is its most likely name, up to a numeric tie: explain_user and user_history
    # sit 0.10 nats apart here (-0.82 / -0.91), and a fresh-clone CI run under load chose user_history once.
    assert scores[chosen] >= max(scores.values()) - TIE_NATS, (chosen, scores)
    assert sum(s > NAME_FLOOR for s in scores.values()) >= 2
    args = chat.constrained_arguments(messages, [s.schema for s in specs.values()], "explain_user")
    checked, problem = specs["explain_user"].validate(args)
    assert problem is None and checked["user_id"] == user


def test_name_logprobs_reads_the_token_that_starts_each_name():
    content = '{"name": "explain_user"}'
    tokens = [{"token": t, "logprob": lp, "top_logprobs": top} for t, lp, top in [
        ('{"', -1.0, []), ("name", 0.0, []), ('":', 0.0, []), (' "', 0.0, []),
        ("explain", -0.7, [{"token": "explain", "logprob": -0.7}, {"token": "at", "logprob": -0.9},
                           {"token": "ex", "logprob": -3.0}, {"token": "Review", "logprob": -4.0}]),
        ("_user", 0.0, []), ('"}', 0.0, [])]]
    names = ["at_risk_users", "explain_user", "review_summary"]
    scores = name_logprobs(content, tokens, names, "explain_user")
    assert scores["at_risk_users"] == pytest.approx(-0.9)
    assert scores["explain_user"] == pytest.approx(float(__import__("numpy").logaddexp(-0.7, -3.0)), abs=1e-5)
    assert scores["review_summary"] == pytest.approx(-5.0)  # among no alternatives: below the least seen
    assert name_logprobs(content, [], names, "explain_user") == {"at_risk_users": NAME_FLOOR, "explain_user": 0.0,
                                                                  "review_summary": NAME_FLOOR}


# ----- bad input --------------------------------------------------------------------------------------
class _ProseServer(JsonHandler):
    """An OpenAI-compatible server that ignores tools and response_format and always answers in prose."""

    seen: list = []

    def do_GET(self):
        self.send_json({"data": [{"id": "prose-only"}]})

    def do_POST(self):
        _ProseServer.seen.append(self.read_json())
        self.send_json({"choices": [{"message": {"role": "assistant", "content": "Churn is when customers stop "
                                                                                 "buying; 97% of them leave."}}]})


@pytest.fixture()
def prose_server():
    _ProseServer.seen = []
    with serving(_ProseServer) as url:
        yield url


def _small_tools():
    def at_risk_users(horizon_days: int = 7) -> dict:
        """Users most likely to stop buying.

        Args:
            horizon_days: Days ahead, 7 or 30.
        """
        return {"horizon_days": horizon_days, "users": [{"user_id": "u_101", "p_churn": 0.82}]}

    return [at_risk_users]


def test_a_server_answering_without_tool_calls_still_ends_with_a_grounded_answer(prose_server):
    agent = Agent(load_llm(prose_server), _small_tools(), max_steps=2)
    events = [e.to_dict() for e in agent.run(QUESTION)]
    assert "response_format" in agent.router.last.error and prose_server in agent.router.last.error
    assert "response_format" in _ProseServer.seen[0]  # the router asked for a constrained call first
    answer = events[-1]
    assert answer["type"] == "answer" and "97%" not in answer["text"]  # the invented figure is not shown
    assert grounding.check(answer["text"], grounding.Evidence.from_results([], [QUESTION])).ok


def test_a_server_that_does_not_answer_is_a_clear_error_and_the_agent_still_answers():
    port = free_port()  # nothing listens there
    agent = Agent(load_llm(f"http://127.0.0.1:{port}"), _small_tools(), max_steps=2, answer_mode="brief")
    events = [e.to_dict() for e in agent.run(QUESTION)]
    errors = [e for e in events if e["type"] == "error"]
    assert errors and f"cannot reach the model server at http://127.0.0.1:{port}/v1" in errors[0]["message"]
    assert "llama_cpp.server" in errors[0]["message"]
    answer = events[-1]
    assert answer["type"] == "answer" and answer["text"] and answer["ungrounded"] == []
    assert grounding.check(answer["text"], grounding.Evidence.from_results([], [QUESTION])).ok


class _NoLogprobsServer(_ProseServer):
    """Like llama_cpp.server started with --logits_all false: logprobs are an error, constraints are kept."""

    def do_POST(self):
        body = self.read_json()
        _ProseServer.seen.append(body)
        if body.get("logprobs"):
            data = b'{"error": "logprobs is not supported for models created with logits_all=False"}'
            self.send_response(500)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        schema = (body.get("response_format") or {}).get("schema") or {}
        if "arguments" in schema.get("properties", {}):
            content = '{"name": "at_risk_users", "arguments": {"horizon_days": 7}}'
        elif schema:
            content = '{"name": "at_risk_users"}'
        else:
            content = "User u_101 is the most likely to churn, with a probability of 0.82."
        self.send_json({"choices": [{"message": {"role": "assistant", "content": content}}]})


def test_a_server_without_logprobs_routes_by_its_constrained_choice():
    _ProseServer.seen = []
    with serving(_NoLogprobsServer) as url:
        chat = load_llm(url)
        agent = Agent(chat, _small_tools(), max_steps=2)
        events = [e.to_dict() for e in agent.run(QUESTION)]
    call = next(e for e in events if e["type"] == "tool_call")
    assert call["routed"] and call["name"] == "at_risk_users" and call["arguments"] == {"horizon_days": 7}
    assert chat.top_logprobs == 0 and agent.router.last.model_scores == {"at_risk_users": 0.0}
    assert [bool(b.get("logprobs")) for b in _ProseServer.seen[:2]] == [True, False]  # asked once, then not
    answer = events[-1]
    results = [e["result"] for e in events if e["type"] == "tool_result"]
    assert "u_101" in answer["text"] and grounding.check(answer["text"], grounding.Evidence.from_results(
        results, [QUESTION])).ok
