"""Decoding over llama.cpp: prefix reuse, persisted prompt prefixes, name scores, greedy and grammar decoding.

    engine = LlamaEngine.open(gguf_path, n_threads=2)           # llama_cpp.Llama underneath
    logits = engine.prefill(engine.encode(prompt))              # only what differs from the last prompt
    text, n_in, n_out = engine.greedy(prompt, max_new_tokens=64, stop_texts=("</tool_call>",))
    scores = engine.score_continuations(prompt, [engine.encode('at_risk_users"'), ...])
    raw = engine.constrained(prompt, gbnf_text, max_new_tokens=64)   # text the grammar accepts

One sequence, one KV cache: every call starts from the longest token prefix it shares with the
last one (`n_tokens` rewinding trims the cache), so an agent's steps prefill only their new
tokens. A prompt's fixed head (the system prompt and tool schemas, ~1,000 tokens with Qwen's
template) can be persisted with `llama_state_seq_save_file` beside the model (a few MB: the
sequence's KV only, not the 300 MB logits buffer `save_state` writes), keyed by everything that
changes it, so a fresh process loads it instead of prefilling it again.

llama.cpp's OpenMP threads busy-wait by default; on a shared or busy CPU that made decoding 30x
slower (measured: 0.3 against 10.7 tok/s with 2 threads at load 11). `OMP_WAIT_POLICY=PASSIVE` is
set before the library loads unless the environment says otherwise.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

log = logging.getLogger(__name__)  # one DEBUG line per prefill: tokens computed, reused, loaded (bench/cold_ask.py)
MAX_PREFIX_STATES = 8  # persisted prefixes kept per model (a few MB each); the oldest go first
_said_threads: list[int] = []


class ContextFull(ValueError):
    """A prompt (or a prompt and its continuation) longer than llama.cpp's context window."""


def default_threads() -> int:
    """Threads for llama.cpp: the cores this process may use that are not already busy (1 to 8).

    Every llama.cpp op waits for all its threads, so a thread that the OS does not schedule
    stalls the others: on 2 cores at load 17, 2 threads decoded SmolLM2 at 0.47 tok/s and 1
    thread at 11.4 tok/s. On an idle machine every core is used. One core's worth of load is not
    counted: asking again right after an answer leaves a load of ~1-1.5 that is this user's own
    finished work, and counting it halved the threads (cold ask 16.5 s instead of 11 s on 2 cores,
    bench/results/llm_engines.md). SHOPSIGHT_THREADS overrides.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    busy = int(max(0.0, os.getloadavg()[0] - 1.0)) if hasattr(os, "getloadavg") else 0
    threads = max(1, min(8, cores - busy))
    if not _said_threads:
        _said_threads.append(threads)
        if threads < cores:
            import sys

            print(f"note: llama.cpp uses {threads} of {cores} cores (the others are busy: load {os.getloadavg()[0]:.1f}); "
                  "set SHOPSIGHT_THREADS to choose", file=sys.stderr, flush=True)
    return threads


# ggml's log levels (ggml.h): llama-cpp-python 0.3.x maps them one step off, so with verbose=False
# it prints WARN lines and hides ERROR ones. While a LoRA loads that means: llama.cpp's placement
# note "lora for 'blk.N.ffn_down.weight' cannot use buft 'CPU_REPACK', fallback to CPU" (a WARN
# per layer whose weights it repacked; the adapter is applied) is printed on every ask, and
# "failed to apply lora adapter" (an ERROR; the model then runs without it) is not.
_WARN, _ERROR, _CONT = 3, 4, 5
_PLACEMENT_NOTE = "cannot use buft"


@contextmanager
def _lora_log_filter() -> Iterator[list[str]]:
    """While a LoRA adapter loads: llama.cpp's ERROR lines are kept (yielded), its placement notes
    dropped, and every other line goes where llama-cpp-python sends it."""
    import llama_cpp
    from llama_cpp import _logger

    errors: list[str] = []
    last = [0]  # a continuation line belongs to the level of the line it continues

    @llama_cpp.llama_log_callback
    def on_log(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        line = text.decode("utf-8", "replace")
        if level != _CONT:
            last[0] = -1 if level == _WARN and _PLACEMENT_NOTE in line else level
        if last[0] == _ERROR:
            errors.append(line.strip())
        elif last[0] != -1:
            _logger.llama_log_callback(level, text, user_data)

    llama_cpp.llama_log_set(on_log, ctypes.c_void_p(0))
    try:
        yield errors
    finally:
        llama_cpp.llama_log_set(_logger.llama_log_callback, ctypes.c_void_p(0))


class LlamaEngine:
    """One llama.cpp model and context, decoded greedily with its KV cache reused.

    Args:
        llm: A `llama_cpp.Llama` (logits_all=False: logits are read per position when needed).
        state_dir: Folder for persisted prompt prefixes (None: do not persist).
        state_key: What identifies the model and adapter in a prefix's key (sha256, paths).
    """

    def __init__(self, llm, state_dir: Path | None = None, state_key: str = ""):
        import llama_cpp

        self.llm = llm
        self.lib = llama_cpp
        self.state_dir = Path(state_dir) if state_dir else None
        self.state_key = state_key
        self.n_vocab = llm.n_vocab()
        self.n_ctx = llm.n_ctx()
        self.lock = threading.RLock()  # one conversation at a time owns the KV cache
        self.last_reused = 0  # tokens of the last prompt that were not computed again
        self.last_loaded_prefix = 0  # tokens of the last prompt loaded from a persisted prefix
        self.last_new_tokens = 0
        vocab = llm._model.vocab
        self._is_eog = lambda token: bool(llama_cpp.llama_vocab_is_eog(vocab, token))
        self._vocab = vocab

    @classmethod
    def open(cls, gguf: Path, n_threads: int | None = None, n_ctx: int = 4096, n_batch: int = 256,
             lora_path: Path | None = None, state_dir: Path | None = None, state_key: str = "") -> "LlamaEngine":
        """Load a GGUF (and a GGUF LoRA adapter) with llama.cpp.

        n_batch is the prefill batch; llama.cpp's compute buffer grows with it (Qwen 0.5B: 151 MiB
        at 256, 302 MiB at its default 512, measured), which counts against the 1.5 GB budget.
        llama-cpp-python's n_batch x vocab scores array is never written with logits_all=False
        (logits are read from llama.cpp per position), so its pages never become resident.
        """
        from llama_cpp import Llama

        threads = n_threads or default_threads()
        options = dict(model_path=str(gguf), n_ctx=n_ctx, n_batch=n_batch, n_ubatch=n_batch, n_threads=threads,
                       n_threads_batch=threads, verbose=False)
        if lora_path is None:
            return cls(Llama(**options), state_dir=state_dir, state_key=state_key)
        with _lora_log_filter() as errors:
            try:
                llm = Llama(**options, lora_path=str(lora_path))
            except (ValueError, RuntimeError) as exc:
                raise type(exc)("; ".join([str(exc), *errors[-3:]])) from None
        failed = [line for line in errors if "lora" in line.lower()]
        if failed:  # llama-cpp-python goes on without the adapter: refuse instead of answering with the base weights
            llm.close()
            raise RuntimeError(f"llama.cpp could not load the LoRA adapter {lora_path}: {'; '.join(failed[-3:])}")
        if errors:
            import sys

            print("\n".join(errors), file=sys.stderr, flush=True)
        return cls(llm, state_dir=state_dir, state_key=state_key)

    # ------------------------------------------------------------------ tokens
    def encode(self, text: str) -> list[int]:
        """Tokens of `text`, chat markup (`<|im_start|>`) read as special tokens, no BOS added."""
        return self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True)

    def piece(self, tokens: Sequence[int]) -> bytes:
        return self.llm.detokenize(list(tokens))

    def is_end(self, token: int) -> bool:
        return self._is_eog(token)

    def _logits(self, index: int = -1) -> np.ndarray:
        """Logits (vocab,) of the index-th output of the last decode (-1: the last)."""
        ptr = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, index)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    # ------------------------------------------------------------------ prefill
    def prefill(self, ids: list[int], persist_prefix: int = 0) -> np.ndarray:
        """Make the KV cache hold exactly `ids`; returns the logits after the last token (a copy).

        Reuses the longest prefix shared with what the cache holds; when `persist_prefix` > 0 the
        first `persist_prefix` tokens (the fixed head of every prompt) are loaded from disk if a
        state for them was saved, and saved after computing them otherwise.
        """
        llm = self.llm
        self._check_fits(len(ids))
        started = time.perf_counter()
        held = llm.n_tokens
        shared = 0
        cached = llm.input_ids[:held]
        limit = min(held, len(ids) - 1)  # at least one token is evaluated, for fresh logits
        while shared < limit and cached[shared] == ids[shared]:
            shared += 1
        self.last_loaded_prefix = 0
        held_shared = shared
        if persist_prefix and shared < persist_prefix <= len(ids) - 1 and self.state_dir is not None:
            if self._load_prefix(ids[:persist_prefix]):
                shared = self.last_loaded_prefix = persist_prefix
            else:
                self._rewind(shared)
                llm.eval(ids[shared:persist_prefix])
                self._save_prefix(ids[:persist_prefix])
                shared = persist_prefix
        self.last_reused = shared
        self._rewind(shared)
        llm.eval(ids[shared:])
        loaded = self.last_loaded_prefix and self.last_loaded_prefix - held_shared
        log.debug("prefill: %d tokens, %d computed, %d kept in the cache, %d loaded from disk, %.2f s", len(ids),
                  len(ids) - held_shared - loaded, held_shared, loaded, time.perf_counter() - started)
        return self._logits().copy()

    def _check_fits(self, n_tokens: int) -> None:
        """Refuse, with the numbers and the fix, what llama.cpp would refuse as `llama_decode returned 1`."""
        if n_tokens > self.n_ctx:
            raise ContextFull(f"the prompt needs {n_tokens} tokens, more than llama.cpp's context of {self.n_ctx} "
                              "tokens: start a new conversation (or a new --session file), or raise SHOPSIGHT_N_CTX")

    def _rewind(self, n: int) -> None:
        """Keep the first n tokens of the cache, drop the rest."""
        self.llm._ctx.kv_cache_seq_rm(-1, n, -1)
        self.llm.n_tokens = n

    # ------------------------------------------------------------------ persisted prefixes
    def prefix_file(self, tokens: Sequence[int]) -> Path | None:
        """Where the KV state of this prefix is kept (keyed by model, adapter and the tokens)."""
        if self.state_dir is None:
            return None
        digest = hashlib.sha256(self.state_key.encode("utf-8"))
        digest.update(np.asarray(tokens, dtype=np.int32).tobytes())
        return self.state_dir / f"{digest.hexdigest()[:32]}.kvstate"

    def _load_prefix(self, tokens: list[int]) -> bool:
        path = self.prefix_file(tokens)
        if path is None or not path.is_file():
            return False
        self._rewind(0)
        out = (self.lib.llama_token * len(tokens))()
        count = ctypes.c_size_t(0)
        read = self.lib.llama_state_seq_load_file(self.llm._ctx.ctx, str(path).encode(), 0, out, len(tokens),
                                                  ctypes.byref(count))
        if read == 0 or count.value != len(tokens) or list(out) != list(tokens):
            self._rewind(0)  # unreadable or another prefix: compute it again (and overwrite)
            return False
        self.llm.input_ids[:len(tokens)] = tokens
        self.llm.n_tokens = len(tokens)
        os.utime(path)  # recently used: kept when old ones are pruned
        return True

    def _save_prefix(self, tokens: list[int]) -> None:
        path = self.prefix_file(tokens)
        if path is None:
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
        arr = (self.lib.llama_token * len(tokens))(*tokens)
        if self.lib.llama_state_seq_save_file(self.llm._ctx.ctx, str(tmp).encode(), 0, arr, len(tokens)):
            os.replace(tmp, path)  # atomic: a reader never sees half a state
        tmp.unlink(missing_ok=True)
        states = sorted(path.parent.glob("*.kvstate"), key=lambda p: p.stat().st_mtime, reverse=True)
        for old in states[MAX_PREFIX_STATES:]:
            old.unlink(missing_ok=True)

    # ------------------------------------------------------------------ scoring
    def score_continuations(self, ids: list[int], candidates: list[list[int]], persist_prefix: int = 0) -> list[float]:
        """log P(candidate | ids) for each candidate token list: one prefill, one batch per candidate.

        The cache is rewound to `ids` after each candidate, so the next call reuses it whole.
        """
        first = _log_softmax(self.prefill(ids, persist_prefix))
        llm, base = self.llm, len(ids)
        scores = []
        self._check_fits(base + max((len(c) for c in candidates), default=1) - 1)
        for cand in candidates:
            total = float(first[cand[0]])
            if len(cand) > 1:
                llm._batch.set_batch(batch=cand[:-1], n_past=base, logits_all=True)
                llm._ctx.decode(llm._batch)
                for k, token in enumerate(cand[1:]):
                    total += float(_log_softmax(self._logits(k))[token])
                llm._ctx.kv_cache_seq_rm(-1, base, -1)
            scores.append(total)
        return scores

    # ------------------------------------------------------------------ decoding
    def stream(self, ids: list[int], max_new_tokens: int, stop_texts: Sequence[str] = (),
               persist_prefix: int = 0) -> Iterator[str]:
        """Greedy continuation of `ids` as text pieces; `last_new_tokens` counts the tokens."""
        logits = self.prefill(ids, persist_prefix)
        new: list[int] = []
        text = ""
        self.last_new_tokens = 0
        for _ in range(max_new_tokens):
            token = int(np.argmax(logits))
            if self.is_end(token):
                break
            new.append(token)
            self.last_new_tokens = len(new)
            decoded = self.piece(new).decode("utf-8", errors="ignore")  # whole text: multi-byte safe
            if len(decoded) > len(text):
                yield decoded[len(text):]
                text = decoded
            if any(s in text for s in stop_texts) or self.llm.n_tokens >= self.n_ctx:
                break  # a stop text, or the context is full (the text so far is the answer)
            self.llm.eval([token])
            logits = self._logits()

    def greedy(self, ids: list[int], max_new_tokens: int, stop_texts: Sequence[str] = (),
               persist_prefix: int = 0) -> tuple[str, int]:
        """Greedy continuation of `ids`: (text, new tokens)."""
        text = "".join(self.stream(ids, max_new_tokens, stop_texts, persist_prefix))
        return text, self.last_new_tokens

    def constrained(self, ids: list[int], grammar: str, max_new_tokens: int,
                    done: Callable[[str], bool] | None = None) -> str:
        """Greedy continuation of `ids` that the GBNF `grammar` accepts (root rule "root").

        The greedy token is checked against the grammar alone first and the whole vocabulary is
        filtered only when it is refused (as llama.cpp's own sampler does): most steps cost one
        check instead of 150k. Stops at the end of the grammar, an end token, or when `done(text)`.
        """
        lib = self.lib
        sampler = lib.llama_sampler_init_grammar(self._vocab, grammar.encode("utf-8"), b"root")
        if not sampler:
            raise ValueError(f"llama.cpp refused the grammar:\n{grammar}")
        one = np.zeros(1, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True))
        full = np.zeros(self.n_vocab, dtype=one.dtype)
        full["id"] = np.arange(self.n_vocab, dtype=np.intc)
        try:
            logits = self.prefill(ids)
            new: list[int] = []
            text = ""
            for _ in range(max_new_tokens):
                token = int(np.argmax(logits))
                one["id"][0], one["logit"][0] = token, logits[token]
                if not self._allowed(sampler, one):
                    full["logit"] = logits
                    self._apply(sampler, full)
                    token = int(full["id"][np.argmax(full["logit"])])
                    if not np.isfinite(full["logit"].max()):
                        break  # the grammar allows nothing more
                if self.is_end(token):
                    break
                lib.llama_sampler_accept(sampler, token)
                new.append(token)
                text = self.piece(new).decode("utf-8", errors="ignore")
                if (done is not None and done(text)) or self.llm.n_tokens >= self.n_ctx:
                    break
                self.llm.eval([token])
                logits = self._logits()
            return text
        finally:
            lib.llama_sampler_free(sampler)

    def _apply(self, sampler, data: np.ndarray) -> None:
        lib = self.lib
        arr = lib.llama_token_data_array(data=data.ctypes.data_as(lib.llama_token_data_p), size=len(data),
                                         selected=-1, sorted=False)
        lib.llama_sampler_apply(sampler, ctypes.byref(arr))

    def _allowed(self, sampler, one: np.ndarray) -> bool:
        self._apply(sampler, one)
        return bool(np.isfinite(one["logit"][0]))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    x = logits.astype(np.float64)
    x -= x.max()
    return x - np.log(np.exp(x).sum())
