"""decoders: the JAX reference decoder (Llama-family Flax model, KV cache, sampling, strategies)."""

__all__: list[str] = []
