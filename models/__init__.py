"""Byte-level language models (pure torch modules with config dataclasses), installed as
``compbench.models``. The GRU and tiny transformer arrive with the neural coders."""
