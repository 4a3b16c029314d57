"""Engine connectors: adaptcached as the prefix KV cache of an inference engine.

``adaptcache.connectors.hf``: Hugging Face transformers decoder models (Llama family),
shaped after vLLM's KV connector v1 (docs/python.md "Engine connector (transformers)").
Each connector imports its engine (torch, transformers) only when it is imported itself.
"""

__all__ = ["hf"]
