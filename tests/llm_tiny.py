"""A tiny random-init Qwen2 chat model and a tokenizer trained here, for the LLM-layer tests.

`memorize` overfits the model on a few (conversation, reply) pairs so greedy generation says
exactly those replies: a real model and real generation, with outputs the tests can assert.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

TEMPLATE = (Path(__file__).parent / "fixtures" / "tiny_chat_template.jinja").read_text()
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CORPUS = [
    '<tool_call>\n{"name": "churn_risk", "arguments": {"user_id": "42", "horizon_days": 7}}\n</tool_call>',
    '```json\n{"name": "top_items", "arguments": {"category_id": "77", "k": 3}}\n```',
    "What is the churn risk of user 42? Which items sell best in category 77? Hello there.",
    "Churn risk of one user. Best-selling items of a category. The user's id. Days ahead.",
    '{"type": "function", "function": {"name": "x", "description": "y", "parameters": '
    '{"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "integer"}}, "required": ["a"]}}}',
    "system user assistant tool tools response Call a tool as",
]


def build_tokenizer(vocab_size: int = 900, extra: list[str] | None = None) -> PreTrainedTokenizerFast:
    """Byte-level BPE trained on a small corpus, with a chat template that renders tools.

    Args:
        vocab_size: Most tokens (the trainer stops earlier on a small corpus).
        extra: More training text, e.g. the rendered prompts a test will use (prompt rendering
            does not depend on the vocabulary, so a first tokenizer can render them): short
            prompts keep the memorizing fast.
    """
    raw = Tokenizer(models.BPE())
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    raw.train_from_iterator((CORPUS + list(extra or [])) * 4, trainer)
    tok = PreTrainedTokenizerFast(tokenizer_object=raw, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.add_tokens(["<tool_call>", "</tool_call>"])  # plain added tokens: they survive skip_special_tokens
    tok.chat_template = TEMPLATE
    return tok


def build_model(tok: PreTrainedTokenizerFast, hidden: int = 64, layers: int = 2, seed: int = 0) -> Qwen2ForCausalLM:
    """A random-init Qwen2 causal LM sized for the tokenizer."""
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=len(tok), hidden_size=hidden, intermediate_size=hidden * 2, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=2048,
        tie_word_embeddings=True, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    )
    return Qwen2ForCausalLM(config).eval()


def memorize(model, tok, pairs: list[tuple[str, str]], steps: int = 400, lr: float = 1e-2) -> float:
    """Train until greedy decoding of each prompt gives its reply (loss on the reply only).

    Args:
        pairs: (rendered prompt, reply text); the reply is followed by the EOS token.

    Returns:
        The last loss.
    """
    rows, starts = [], []
    for prompt, reply in pairs:
        p = tok(prompt, add_special_tokens=False)["input_ids"]
        r = tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append(p + r)
        starts.append(len(p))
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), tok.pad_token_id)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100)
    for i, (row, start) in enumerate(zip(rows, starts)):
        ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
        labels[i, start: len(row)] = torch.tensor(row[start:])
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    loss = float("inf")
    for _ in range(steps):
        opt.zero_grad()
        out = model(input_ids=ids, attention_mask=mask, labels=labels)
        out.loss.backward()
        opt.step()
        loss = out.loss.item()
        if loss < 0.02:
            break
    model.eval()
    return loss
