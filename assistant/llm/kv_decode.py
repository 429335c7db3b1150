"""Greedy decoding over a local transformers model that reuses the KV cache of the shared prefix.

Every step of the agent re-sends a prompt that starts like the previous one: the same system
prompt and tool schemas (~1,500 tokens with Qwen's template), then the question, then each
call and result. Prefilling all of it again costs most of a step's time on a CPU. The decoder
keeps the cache of the last prompt and, for a new prompt, copies it, cuts it to the longest
shared token prefix and prefills only the rest.

Used by the router (assistant/agent/router.py) and by the agent's later steps when the chat model is
a local one; a remote or scripted chat model goes through `BaseChatModel.invoke` as usual.
"""

from __future__ import annotations

import copy
import threading
from typing import Any

MIN_REUSE_TOKENS = 16  # below this a shared prefix is not worth copying a cache for


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
