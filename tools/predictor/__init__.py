"""The numeric behavior Transformer, its baselines and the benchmark protocol."""
