"""The analyst: the LLM and what it reads and says."""
