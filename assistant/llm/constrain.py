"""Constrained decoding of tool calls: the name a model writes must be one of the bound tools.

A 0.5B model usually picks the right tool but sometimes misspells it or invents one. While
the generated text is inside a call and after `"name": "`, this logits processor allows only
tokens that continue one of the allowed names (and then the closing quote); everywhere else
it leaves the scores alone. Together with a forced prefix (the reply is made to start with
`<tool_call>\n{"name": "`), a required call always names a real tool.
"""

from __future__ import annotations

import bisect
import re
import weakref
from typing import Sequence

import torch
from transformers import LogitsProcessor

from assistant.llm.tool_calls import TOOL_CALL_CLOSE, TOOL_CALL_OPEN

_NAME_OPEN = re.compile(r'"name"\s*:\s*"([^"]*)$')
_PIECES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


class _PieceIndex:
    """Decoded text of every token, searchable by exact text and by prefix."""

    def __init__(self, tokenizer):
        pieces = [tokenizer.decode([i]) for i in range(len(tokenizer))]  # ~1.5 s for 150k tokens
        self.exact: dict[str, list[int]] = {}
        for token_id, piece in enumerate(pieces):
            if piece:
                self.exact.setdefault(piece, []).append(token_id)
        self.sorted = sorted(self.exact)

    def starting_with(self, prefix: str) -> list[int]:
        """Ids of tokens whose text starts with `prefix` (e.g. `",` after a name's last letter)."""
        lo = bisect.bisect_left(self.sorted, prefix)
        ids: list[int] = []
        for piece in self.sorted[lo:]:
            if not piece.startswith(prefix):
                break
            ids.extend(self.exact[piece])
        return ids


def _piece_index(tokenizer) -> _PieceIndex:
    """The piece index of a tokenizer, built once and cached."""
    try:
        return _PIECES[tokenizer]
    except (KeyError, TypeError):
        pass
    index = _PieceIndex(tokenizer)
    try:
        _PIECES[tokenizer] = index
    except TypeError:
        pass
    return index


def inside_call(text: str) -> bool:
    """True when the text ends inside an open `<tool_call>` or an open ``` fence."""
    opened = text.rfind(TOOL_CALL_OPEN)
    if opened > text.rfind(TOOL_CALL_CLOSE):
        return True
    return text.count("```") % 2 == 1


class ToolNameConstraint(LogitsProcessor):
    """Masks every token that would not continue a bound tool's name inside a call.

    Args:
        tokenizer: The model's tokenizer.
        names: The allowed tool names.
        prompt_len: Number of prompt tokens (generated text starts after them).
        prompt_tail: Text the prompt ends with that belongs to the reply (a forced prefix).
    """

    def __init__(self, tokenizer, names: Sequence[str], prompt_len: int, prompt_tail: str = ""):
        self.tokenizer = tokenizer
        self.names = list(names)
        self.prompt_len = prompt_len
        self.prompt_tail = prompt_tail
        self.pieces = _piece_index(tokenizer)
        self.masked_steps = 0  # how often the constraint acted (for tests and logs)

    def allowed_ids(self, text: str) -> list[int] | None:
        """Token ids allowed after `text`, or None when the text is not at a tool name."""
        if not inside_call(text):
            return None
        match = _NAME_OPEN.search(text)
        if match is None:
            return None
        partial = match.group(1)
        allowed: set[int] = set()
        for name in self.names:
            if not name.startswith(partial):
                continue
            rest = name[len(partial):] + '"'
            for k in range(1, len(rest) + 1):
                allowed.update(self.pieces.exact.get(rest[:k], ()))
            # Tokens that finish the name and go on (`",` `"}`) keep the model on its usual
            # tokenization; forcing a lone `"` pushed Qwen 0.5B into writing a full-width comma.
            allowed.update(self.pieces.starting_with(rest))
        return sorted(allowed) or None  # off every name already: nothing sensible to force

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        for row in range(input_ids.shape[0]):
            generated = input_ids[row, self.prompt_len:].tolist()
            text = self.prompt_tail + self.tokenizer.decode(generated, skip_special_tokens=False)
            allowed = self.allowed_ids(text)
            if allowed is None:
                continue
            keep = torch.full_like(scores[row], float("-inf"))
            idx = torch.tensor(allowed, dtype=torch.long, device=scores.device)
            keep[idx] = scores[row, idx]
            scores[row] = keep
            self.masked_steps += 1
        return scores
