"""The engine room: loading chat models (packaged GGUF, HF folders, server URLs), the engines
that run them, likelihood scoring and constrained decoding. Knows nothing about shops."""
