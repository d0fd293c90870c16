"""Models kept apart from their task's module: one module per model family, the architecture, its
initialisation and its parameter / flop counts. The task module (``tasks/<name>.py``) keeps the named
configs, the roles and the record.

  llama    the Llama-style decoder of ``llm`` (RMSNorm, RoPE, SwiGLU, SDPA, optional GQA and tying)
"""
