"""The behavior Transformer: a SASRec-style causal encoder over event tokens (torch only).

Each event is one token: item + category + behavior + time since the previous event + hour +
day of week + amount bucket + learned position (0 = oldest event in the window). A causal
stack of pre-norm blocks reads the tokens; then
- every position predicts the user's next event: item and category by a full softmax over the
  vocabulary with tied embeddings (the SASRec+ recipe), plus a *repeat boost* for ids already in
  the user's history (the user's own recent items is the baseline to beat on real shops),
  and the next behavior;
- the last position, concatenated with standardized RFM features, predicts buy@H and cart@H
  for every horizon at once through cumulative hazards, so P(buy within 7d) <= P(within 30d).
  churn@H is "no buy in (c, c+H]" (docs/benchmark.md), so p_churn = 1 - p_buy exactly.

`forward` returns the training losses; `predict` returns what scoring needs.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from tools.predictor.data import N_AMOUNT_BUCKETS, N_GAP_BUCKETS, N_RESERVED, PAD


@dataclass
class ModelConfig:
    n_items: int
    n_categories: int
    n_known_items: int  # ids N_RESERVED .. N_RESERVED + n_known_items - 1 can be ranked
    n_known_categories: int
    n_features: int
    n_horizons: int
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 2
    dropout: float = 0.1
    # None = `dropout`. 0 lets scaled_dot_product_attention take its fused CPU kernel instead of
    # the math path that draws a (B, heads, T, T) Bernoulli mask per layer (demo training, issue 17).
    attention_dropout: float | None = None
    max_len: int = 50
    copy_buckets: int = 32  # repeat boost depends on how many events ago an id was seen
    item_loss_positions: int = 8  # next-item loss on the last K positions (memory: K*B*V floats)
    wide: bool = False  # add a linear path from the features to the hazards (wide & deep)
    # Start the repeat boost at 0.5 * log(#ids) nats instead of 0. From 0, Adam moves it
    # about lr per step: after a few hundred steps it is ~0.2 nats, while a revisit in a softmax
    # over 10^4-10^5 ids needs several; the softmax then ranks popular ids for every user
    # (measured on real Taobao traffic, bench/results/predictor.md).
    copy_prior: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.n_heads = cfg.n_heads
        self.dropout = cfg.dropout if cfg.attention_dropout is None else cfg.attention_dropout
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.proj = nn.Linear(cfg.d_model, cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_heads, C // self.n_heads).transpose(1, 2) for t in (q, k, v))
        # Left-aligned padding + causal mask: real positions never see the pads that follow them.
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.dropout if self.training and self.dropout else 0.0)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))  # (B, T, C)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(cfg.d_model), nn.LayerNorm(cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.mlp = nn.Sequential(nn.Linear(cfg.d_model, 4 * cfg.d_model), nn.GELU(),
                                 nn.Linear(4 * cfg.d_model, cfg.d_model), nn.Dropout(cfg.dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class BehaviorTransformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.d_model
        self.item_emb = nn.Embedding(cfg.n_items, d, padding_idx=PAD)
        self.cat_emb = nn.Embedding(cfg.n_categories, d, padding_idx=PAD)
        self.beh_emb = nn.Embedding(5, d, padding_idx=0)
        self.gap_emb = nn.Embedding(N_GAP_BUCKETS, d, padding_idx=0)
        self.hour_emb = nn.Embedding(25, d, padding_idx=0)
        self.dow_emb = nn.Embedding(8, d, padding_idx=0)
        self.amount_emb = nn.Embedding(N_AMOUNT_BUCKETS, d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.ln_f = nn.LayerNorm(d)
        self.item_bias = nn.Parameter(torch.zeros(cfg.n_items))
        self.cat_bias = nn.Parameter(torch.zeros(cfg.n_categories))
        self.next_behavior = nn.Linear(d, 4)
        # Repeat boost: weight[behavior, events-ago] times a per-query gate.
        self.item_copy = nn.Parameter(torch.zeros(5, cfg.copy_buckets))
        self.cat_copy = nn.Parameter(torch.zeros(5, cfg.copy_buckets))
        self.copy_gate = nn.Linear(d, 2)
        self.register_buffer("feat_mean", torch.zeros(cfg.n_features))
        self.register_buffer("feat_std", torch.ones(cfg.n_features))
        self.user_head = nn.Sequential(nn.Linear(d + cfg.n_features, 2 * d), nn.GELU(), nn.Dropout(cfg.dropout),
                                       nn.Linear(2 * d, 2 * cfg.n_horizons))
        # The wide path makes "logistic regression on RFM" a special case of this model.
        self.user_wide = nn.Linear(cfg.n_features, 2 * cfg.n_horizons) if cfg.wide else None
        self.apply(self._init_weights)
        if cfg.copy_prior:
            with torch.no_grad():
                for table, n_known in ((self.item_copy, cfg.n_known_items), (self.cat_copy, cfg.n_known_categories)):
                    # / log 2: the gate's softplus starts at softplus(0) = log 2. Flat over events ago:
                    # which of its own ids comes next is the network's to learn, not the prior's.
                    table[1:] = 0.5 * math.log(max(n_known, 2)) / math.log(2.0)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()

    def set_feature_stats(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        self.feat_mean.copy_(mean)
        self.feat_std.copy_(std.clamp_min(1e-3))

    # ---- encoder -------------------------------------------------------------------------
    def encode(self, b: dict[str, torch.Tensor]) -> torch.Tensor:
        T = b["item"].shape[1]
        pos = torch.arange(T, device=b["item"].device)
        x = (self.item_emb(b["item"]) + self.cat_emb(b["category"]) + self.beh_emb(b["behavior"])
             + self.gap_emb(b["gap"]) + self.hour_emb(b["hour"]) + self.dow_emb(b["dow"])
             + self.amount_emb(b["amount"]) + self.pos_emb(pos)[None])  # (B, T, C)
        x = self.drop(x)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x)  # (B, T, C)

    def _last(self, h: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return h[torch.arange(h.shape[0], device=h.device), lengths - 1]  # (B, C)

    def _user_logits(self, h_last: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (features - self.feat_mean) / self.feat_std
        z = self.user_head(torch.cat([h_last, x], dim=1))
        if self.user_wide is not None:
            z = z + self.user_wide(x)
        H = self.cfg.n_horizons
        # Cumulative hazards Lambda_j = sum_{i<=j} softplus(z_i); p = 1 - exp(-Lambda); logit = log(e^L - 1).
        lam = F.softplus(z).view(-1, 2, H).cumsum(dim=2).clamp_min(1e-6)  # (B, 2, H)
        logits = lam + torch.log(-torch.expm1(-lam))
        return logits[:, 0], logits[:, 1]  # buy, cart: (B, H)

    def _rank_logits(self, h: torch.Tensor, tokens: torch.Tensor, beh: torch.Tensor, b_idx: torch.Tensor,
                     t_idx: torch.Tensor, kind: int) -> torch.Tensor:
        """Full-vocabulary scores for N query positions, plus the repeat boost; (N, V)."""
        emb, bias, table = ((self.item_emb, self.item_bias, self.item_copy) if kind == 0
                            else (self.cat_emb, self.cat_bias, self.cat_copy))
        logits = h @ emb.weight.T + bias  # (N, V), tied embeddings
        hist = tokens[b_idx]  # (N, T)
        dist = t_idx[:, None] - torch.arange(tokens.shape[1], device=tokens.device)[None]  # events ago
        valid = (dist >= 0) & (hist != PAD)
        w = table[beh[b_idx], dist.clamp(0, self.cfg.copy_buckets - 1)] * valid
        w = w * F.softplus(self.copy_gate(h)[:, kind])[:, None]
        return logits.scatter_add_(1, hist, w)  # in place: no copy of the (N, V) logits (addmm keeps no output)

    # ---- training --------------------------------------------------------------------------
    def forward(self, b: dict[str, torch.Tensor], weights: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
        """Losses for one batch: next item / category / behavior CE and masked buy/cart BCE."""
        weights = weights or {}
        h = self.encode(b)
        lengths = b["lengths"]
        losses: dict[str, torch.Tensor] = {}
        buy_logits, cart_logits = self._user_logits(self._last(h, lengths), b["features"])
        if "buy" in b:
            m = b["mask"]
            denom = m.sum().clamp_min(1.0)
            losses["buy"] = (F.binary_cross_entropy_with_logits(buy_logits, b["buy"], reduction="none") * m).sum() / denom
            losses["cart"] = (F.binary_cross_entropy_with_logits(cart_logits, b["cart"], reduction="none") * m).sum() / denom
        wants_next = any(weights.get(k, 1.0) > 0 for k in ("next_item", "next_category", "next_behavior"))
        if "next_item" in b and wants_next:
            T = h.shape[1]
            recent = torch.arange(T, device=h.device)[None] >= (lengths[:, None] - self.cfg.item_loss_positions)
            sel = (b["next_item"] >= 0) & recent
            b_idx, t_idx = sel.nonzero(as_tuple=True)
            hs = h[b_idx, t_idx]  # (N, C)
            if len(b_idx):
                for kind, key in ((0, "next_item"), (1, "next_category")):
                    tokens = b["item"] if kind == 0 else b["category"]
                    logits = self._rank_logits(hs, tokens, b["behavior"], b_idx, t_idx, kind)
                    losses[key] = F.cross_entropy(logits, b[key][b_idx, t_idx])
                losses["next_behavior"] = F.cross_entropy(self.next_behavior(hs), b["next_behavior"][b_idx, t_idx])
        total = sum(weights.get(k, 1.0) * v for k, v in losses.items())
        losses["loss"] = total if losses else h.sum() * 0.0
        return losses

    # ---- scoring -----------------------------------------------------------------------------
    @torch.no_grad()
    def predict(self, b: dict[str, torch.Tensor], top_k: int = 10) -> dict[str, torch.Tensor]:
        """Uncalibrated buy/cart logits per horizon, top-k item/category ids, next behavior, user vector."""
        h = self.encode(b)
        lengths = b["lengths"]
        last = self._last(h, lengths)
        buy, cart = self._user_logits(last, b["features"])
        out = {"buy_logits": buy, "cart_logits": cart, "vector": last,
               "behavior_probs": self.next_behavior(last).softmax(-1)}
        if top_k:
            B = h.shape[0]
            b_idx = torch.arange(B, device=h.device)
            for kind, name, n_known in ((0, "items", self.cfg.n_known_items),
                                        (1, "categories", self.cfg.n_known_categories)):
                tokens = b["item"] if kind == 0 else b["category"]
                logits = self._rank_logits(last, tokens, b["behavior"], b_idx, lengths - 1, kind)
                # Only real ids can be named: mask pad/none and the hashed buckets.
                logits = logits[:, N_RESERVED:N_RESERVED + n_known]
                k = min(top_k, n_known)
                if k == 0:
                    out[name] = torch.zeros(B, 0, dtype=torch.long, device=h.device)
                    out[name + "_probs"] = torch.zeros(B, 0, device=h.device)
                    continue
                probs = logits.log_softmax(-1)
                top = probs.topk(k, dim=-1)
                out[name] = top.indices + N_RESERVED
                out[name + "_probs"] = top.values.exp()
        return out

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def cosine_lr(step: int, total: int, warmup: int, base: float, min_ratio: float = 0.1) -> float:
    """Linear warm-up then cosine decay to `min_ratio * base`."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))
