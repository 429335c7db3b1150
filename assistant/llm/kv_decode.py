"""The transformers engine's decoding: greedy, name scores and argument objects, reusing the KV cache.

Every step of the agent re-sends a prompt that starts like the previous one: the same system
prompt and tool schemas (~1,500 tokens with Qwen's template), then the question, then each
call and result. Prefilling all of it again costs most of a step's time on a CPU. The decoder
keeps the cache of the last prompt and, for a new prompt, copies it, cuts it to the longest
shared token prefix and prefills only the rest.

It implements the decoding interface of assistant/llm/decoding.py for `LocalToolChat`
(assistant/llm/local_chat.py); the llama.cpp engine's counterpart is assistant/llm/llama_engine.py.

    decoder = CachedDecoder(model, tokenizer)
    text, n_in, n_out = decoder.generate(prompt, max_new_tokens=64)
    scores = decoder.score_names(prompt, ["at_risk_users", "explain_user"])   # prompt ends with `{"name": "`
    raw = decoder.decode_arguments(prompt, "at_risk_users", parameters_schema, max_tokens=64)

Argument objects are decoded greedily until their braces balance and read leniently (a missing
close brace, unquoted keys); llama.cpp constrains them with the tool's JSON-schema grammar instead.
"""

from __future__ import annotations

import copy
import json
import re
import threading
from typing import Any

MIN_REUSE_TOKENS = 16  # below this a shared prefix is not worth copying a cache for
_OPEN_KEY_RE = re.compile(r',\s*"([^"]*)"?$')  # the key being written after a comma
_BARE_KEY_RE = re.compile(r'([{,]\s*)([A-Za-z_]\w*)\s*:')


def _cache_of(output: Any) -> Any:
    # transformers 5.x names the returned cache `past_key_values` on outputs but `cache` as an argument.
    cache = getattr(output, "cache", None)
    return cache if cache is not None else output.past_key_values


class CachedDecoder:
    """Prefill with prefix reuse, next-token scores, and greedy generation.

    Args:
        model: a causal LM (possibly a peft model).
        tokenizer: its tokenizer.
    """

    def __init__(self, model: Any, tokenizer: Any):
        self.model = model
        self.tokenizer = tokenizer
        self.lock = threading.RLock()  # one conversation at a time owns the stored cache
        self._stored: tuple[list[int], Any] | None = None
        self.last_reused = 0
        eos = {tokenizer.eos_token_id, getattr(tokenizer, "pad_token_id", None)}
        for special in ("<|im_end|>", "<|endoftext|>"):
            token_id = tokenizer.convert_tokens_to_ids(special) if hasattr(tokenizer, "convert_tokens_to_ids") else None
            if isinstance(token_id, int) and token_id != getattr(tokenizer, "unk_token_id", None):
                eos.add(token_id)
        self.eos_ids = {e for e in eos if e is not None}

    @property
    def device(self) -> Any:
        return self.model.device

    def encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def prefill(self, ids: list[int]) -> tuple[Any, Any]:
        """Run the prompt `ids` (reusing a stored prefix); returns (cache, logits of the last position).

        The cache returned covers exactly `ids`; a copy is stored for the next prompt.
        """
        import torch

        cache, start = self._reusable(ids)
        self.last_reused = start
        out = self.model(input_ids=torch.tensor([ids[start:]], device=self.device), cache=cache, use_cache=True)
        cache = _cache_of(out)
        self._stored = (list(ids), copy.deepcopy(cache))
        return cache, out.logits[0, -1]

    def forward(self, ids: list[int], cache: Any) -> Any:
        """Logits (T, V) of `ids` continuing `cache` (which grows by len(ids))."""
        import torch

        return self.model(input_ids=torch.tensor([ids], device=self.device), cache=cache, use_cache=True).logits[0]

    def _reusable(self, ids: list[int]) -> tuple[Any, int]:
        if self._stored is None:
            return None, 0
        stored_ids, stored_cache = self._stored
        shared = 0
        for a, b in zip(stored_ids, ids):
            if a != b:
                break
            shared += 1
        shared = min(shared, len(ids) - 1)  # at least one new token, for the next-token scores
        if shared < MIN_REUSE_TOKENS:
            return None, 0
        cache = copy.deepcopy(stored_cache)
        if cache.get_seq_length() > shared:
            cache.crop(shared - cache.get_seq_length())  # negative: the number of tokens to drop
        return cache, shared

    def generate(self, prompt: str, max_new_tokens: int, stop_texts: tuple[str, ...] = ()) -> tuple[str, int, int]:
        """Greedy continuation of `prompt`; returns (text, prompt tokens, new tokens)."""
        import torch

        with self.lock, torch.inference_mode():
            ids = self.encode(prompt)
            cache, logits = self.prefill(ids)
            new: list[int] = []
            text = ""
            for _ in range(max_new_tokens):
                token = int(logits.argmax())
                if token in self.eos_ids:
                    break
                new.append(token)
                text = self.tokenizer.decode(new, skip_special_tokens=True)
                if any(s in text for s in stop_texts):
                    break
                logits = self.forward([token], cache)[-1]
            return text, len(ids), len(new)

    def score_names(self, prompt: str, names: list[str]) -> dict[str, float]:
        """log P(name + '"' | prompt) for every name in one batched forward pass (right-padded)."""
        import torch

        with self.lock, torch.inference_mode():
            cache, last_logits = self.prefill(self.encode(prompt))
            first_logp = torch.log_softmax(last_logits.float(), -1)
            encoded = [self.encode(name + '"') for name in names]
            scores = {name: float(first_logp[ids[0]]) for name, ids in zip(names, encoded)}
            width = max(len(ids) for ids in encoded) - 1
            if width == 0:
                return scores
            batch = copy.deepcopy(cache)
            batch.batch_repeat_interleave(len(names))
            pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
            rows = [ids[:-1] + [pad] * (width - len(ids) + 1) for ids in encoded]
            out = self.model(input_ids=torch.tensor(rows, device=self.device), cache=batch, use_cache=True)
            logp = torch.log_softmax(out.logits.float(), -1)  # (names, width, vocab); padding only follows
            for row, (name, ids) in enumerate(zip(names, encoded)):
                scores[name] += float(sum(logp[row, k, ids[k + 1]] for k in range(len(ids) - 1)))
            return scores

    def decode_arguments(self, prompt: str, name: str, schema: dict, max_tokens: int) -> str:
        """The argument object of a call to `name` after `prompt` (ending `{"name": "`), as JSON text.

        Greedy until the braces balance, a key no property of `schema` starts with is opened, or
        `max_tokens`; read leniently ("{}" when it cannot be read).
        """
        import torch

        keys = list(schema.get("properties", {}))
        with self.lock, torch.inference_mode():
            cache, logits = self.prefill(self.encode(prompt) + self.encode(name + '", "arguments": {'))
            text, depth = "", 1
            for _ in range(max_tokens):
                token = int(logits.argmax())
                if token in self.eos_ids:
                    break
                piece = self.tokenizer.decode([token])
                closed = False
                for i, char in enumerate(piece):
                    depth += {"{": 1, "}": -1}.get(char, 0)
                    if depth == 0:
                        text, closed = text + piece[:i], True
                        break
                if closed:
                    break
                text += piece
                if "</tool_call>" in text or "\n\n" in text:
                    break
                key = _OPEN_KEY_RE.search(text)
                if key and not any(p.startswith(key.group(1)) for p in keys):
                    text = text[:key.start()]  # a key this tool does not have: the object is done
                    break
                logits = self.forward([token], cache)[-1]
        return json.dumps(parse_object("{" + text))


def parse_object(text: str) -> dict:
    """An argument object, forgiving a missing close brace and unquoted keys; {} when it cannot be read."""
    quoted = _BARE_KEY_RE.sub(r'\1"\2":', text)  # `{horizon_days: 7` as a tuned model sometimes writes it
    for candidate in (text + "}", text, text.rstrip(", \n") + "}", quoted + "}", quoted.rstrip(", \n") + "}"):
        try:
            value = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        return value if isinstance(value, dict) else {}
    return {}
