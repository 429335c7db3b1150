"""A tiny random-init Qwen2 model and a byte-level BPE tokenizer trained on the spot.

Tests and smoke runs use it to exercise the real fine-tune and evaluation scripts in seconds
on a CPU: the same code path as the 0.5B model, with a model of a few thousand parameters.
Nothing is downloaded: the tokenizer is trained here on the given texts and the weights are
random (seeded), so the result is the same on every run.
"""

from __future__ import annotations

from pathlib import Path

import torch

TEMPLATE = Path(__file__).resolve().parent / "tiny_chat_template.jinja"
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def train_tokenizer(texts: list[str], vocab_size: int = 400):
    """Train a byte-level BPE tokenizer on `texts` and give it the tiny chat template.

    Args:
        texts: training corpus (a few hundred short strings are enough).
        vocab_size: target vocabulary size including the 256 byte symbols and specials.

    Returns:
        A `PreTrainedTokenizerFast` with pad/eos tokens and a chat template that renders
        tools and tool calls the way Qwen2.5 does.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte encodable
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = TEMPLATE.read_text(encoding="utf-8")
    return tokenizer


def build_tiny_qwen2(folder: str | Path, texts: list[str], seed: int = 0, vocab_size: int = 400,
                     hidden_size: int = 32, num_layers: int = 2) -> Path:
    """Write a random-init Qwen2 causal LM and its trained tokenizer into `folder`.

    Args:
        folder: output folder (created); loadable with `AutoModelForCausalLM.from_pretrained`.
        texts: tokenizer training corpus.
        seed: torch seed of the random weights.
        vocab_size: tokenizer vocabulary size target.
        hidden_size: model width (a multiple of 8: 4 heads, 2 key/value heads).
        num_layers: transformer blocks.

    Returns:
        The folder.
    """
    from transformers import Qwen2Config, Qwen2ForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = train_tokenizer(texts, vocab_size=vocab_size)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=hidden_size * 2,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
