"""The one decoding interface the agent uses: what an in-process chat model offers besides chat.

Both local engines implement it: `LlamaToolChat` (llama.cpp, assistant/llm/llama_chat.py, the
default) and `LocalToolChat` (transformers, assistant/llm/local_chat.py). The agent's router and
loop (assistant/agent/) ask the chat model through it and never decode on their own; a server or
scripted chat model does not offer it and is driven through `invoke` instead.

    if decodes_locally(chat):
        prompt, _, _ = chat.render_prompt(messages, schemas, "any")    # ends with `{"name": "`
        scores = chat.score_names(prompt, ["at_risk_users", "explain_user"])
        raw = chat.decode_arguments(prompt, "at_risk_users", parameters_schema, max_tokens=64)
        text, n_in, n_out = chat.complete(chat.render_prompt(messages, schemas)[0], 64, ("</tool_call>",))

- `score_names(prompt, names) -> {name: log P(name + '"' | prompt)}`: likelihoods of whole names.
- `decode_arguments(prompt, name, schema, max_tokens) -> str`: the JSON argument object of a call
  to `name` continuing `prompt + name + '", "arguments": '`; llama.cpp constrains it with
  `schema`'s grammar, so it always parses.
- `complete(prompt, max_new_tokens, stop) -> (text, prompt tokens, new tokens)`: greedy.
Each reuses the KV cache of the prompt prefix it shares with the previous call.
"""

from __future__ import annotations

from typing import Any

DECODING_METHODS = ("render_prompt", "score_names", "decode_arguments", "complete")


def decodes_locally(chat_model: Any) -> bool:
    """True when the chat model offers the decoding interface (an in-process engine)."""
    return all(callable(getattr(chat_model, name, None)) for name in DECODING_METHODS)
