"""A toy architecture for tests: the whole of what a new byte-LM needs, in one module.

Low-rank bigram: logits = W_out @ E[previous byte]. Registered by one call in test_toy_arch.py.
"""

import dataclasses

import torch
from torch import nn

from compbench.models import intops
from compbench.models.gru import VOCAB_IN, _q_rows
from compbench.models.transformer import WindowBatches


@dataclasses.dataclass(frozen=True)
class Config:
    rank: int = 16

    def __post_init__(self):
        if not 1 <= self.rank <= 1024:
            raise ValueError(f"rank={self.rank} is out of range [1, 1024]")

    def artifact_params(self) -> tuple[int, int]:
        return VOCAB_IN * self.rank + 256 * self.rank, VOCAB_IN + 256 + 256


class LM(nn.Module):
    eval_segment = 512

    def __init__(self, cfg: Config, dropout: float = 0.0):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(VOCAB_IN, cfg.rank)
        self.out = nn.Linear(cfg.rank, 256)

    def forward(self, x, h=None):
        return self.out(self.emb(x)), None

    @staticmethod
    def carry(h, reset):
        return None


@torch.no_grad()
def export(lm: LM) -> dict:
    t = {}
    t["emb"], t["emb_scale"] = _q_rows(lm.emb.weight.float())
    t["out"], t["out_scale"] = _q_rows(lm.out.weight.float())
    t["b_out"] = lm.out.bias.to(torch.float16)
    return t


class Engine:
    def __init__(self, cfg: Config, t: dict):
        self.emb = t["emb"]
        self.w = intops.Int8Matrix(t["out"].T)
        self.s = t["out_scale"].to(torch.float32) / 127.0
        self.b = t["b_out"].to(torch.float32)

    def start(self, batch: int):
        return None

    def step(self, state, inputs: torch.Tensor) -> torch.Tensor:
        # The embedding row is already int8: the product is exact, the rest is row-wise float32.
        return intops.int_matmul(self.emb.index_select(0, inputs), self.w, torch.float32) * self.s + self.b


batches = WindowBatches
