"""`attention_dropout` (tools/predictor/model.py): 0 keeps attention exact in training mode, where the
demo recipe's speed comes from (SDPA's fused kernel draws no mask); None follows `dropout`."""

from __future__ import annotations

import torch

from tools.predictor.model import CausalSelfAttention, ModelConfig


def _attention(attention_dropout):
    cfg = ModelConfig(n_items=10, n_categories=5, n_known_items=5, n_known_categories=2, n_features=3, n_horizons=1,
                      d_model=16, n_heads=2, dropout=0.5, attention_dropout=attention_dropout)
    torch.manual_seed(0)
    return CausalSelfAttention(cfg).train()


def test_zero_attention_dropout_is_exact_in_training_mode():
    x = torch.randn(4, 12, 16)
    attn = _attention(0.0)
    torch.testing.assert_close(attn(x), attn(x))
    torch.testing.assert_close(attn(x), attn.eval()(x))


def test_unset_attention_dropout_follows_dropout():
    x = torch.randn(4, 12, 16)
    attn = _attention(None)
    assert attn.dropout == 0.5
    assert not torch.allclose(attn(x), attn(x))  # two different masks
