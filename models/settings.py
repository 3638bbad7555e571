"""Training settings: a plain dataclass, importable without torch (the CLI builds one before any
model code loads). :func:`compbench.models.train.train` reads it; the harness extends it with the
corpus it loads (``compbench.train.TrainConfig``)."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class TrainSettings:
    model: str = "gru"  # the architecture (a name in compbench.models.ARCHS)
    budget: int = 1_000_000
    out: str = "runs/model"
    minutes: float | None = None
    steps: int | None = None
    seed: int = 0
    batch: int = 0  # 0: the architecture's default
    seq_len: int = 0  # 0: the architecture's default (0 there: the config's context)
    lr: float = 0.0  # 0: the architecture's default
    # The train splits are small (3 MB for the enwik8 head): a 1 MB model memorises them within a
    # few epochs (transformer without dropout: train 1.7 bpb, val 2.2), so training regularises.
    dropout: float = 0.1
    weight_decay: float = 0.1
    device: str = "cpu"
    precision: str = "auto"  # auto | bf16 | fp32
    threads: int = 0
    size: dict = dataclasses.field(default_factory=dict)  # explicit config fields (skip budget fit)
    eval_s: float = 120.0
    checkpoint_s: float = 300.0
    meta: dict = dataclasses.field(default_factory=dict)  # recorded in the artifact (corpus, split)
