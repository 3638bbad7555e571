"""The list of byte-LM architectures: one record each, and nothing here imports torch.

Everything else is derived from these records: the coder classes the harness registers (``gru``,
``transformer``), the ``compbench train --model`` choices, the decoder code an artifact carries,
the training defaults and the tiny sizes the tests train. Adding an architecture is one module (a
config dataclass, a torch module, ``export`` and an integer engine; see :mod:`.gru`) plus one
:func:`register_arch` call.

This package (``compbench.models``) imports nothing from the harness: it is the engine that a
submission exporter ships, and the code counted in every neural artifact.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class CodingOption:
    """An integer option an architecture's coder adds to the shared ones (``streams``, ``mix``, ...).
    The coder checks it against [lo, hi] and hands it to ``Engine.for_coding`` before coding. It
    changes the probabilities, so it is a format option: a payload header carries it when it is not
    at its default, and the default is part of the payload format."""

    name: str
    default: int
    lo: int
    hi: int


@dataclass(frozen=True)
class ArchInfo:
    """One architecture. ``module`` is imported (with torch) only when a model is built or run; it
    must define ``Config`` (a frozen dataclass with ``artifact_params()``), ``LM(cfg, dropout)``,
    ``export(lm) -> tensors``, ``Engine(cfg, tensors)`` and ``batches(data, batch, seq, gen)``."""

    name: str
    module: str  # importable module name
    description: str  # one line for `compbench coders`
    streams: int = 64  # default lockstep streams when coding
    batch: int = 32  # training defaults
    seq_len: int = 256  # 0: the config's context length
    lr: float = 2e-3
    size_field: str = "hidden"  # the config field that fit-to-budget grows
    size_step: int = 8
    tiny: dict = field(default_factory=dict)  # a seconds-to-train size for tests
    code: tuple[str, ...] = ()  # extra decoder files beyond the shared ones and the module itself
    options: tuple[CodingOption, ...] = ()  # coder options of this architecture alone

    def load(self):
        return importlib.import_module(self.module)

    def decoder_files(self) -> list[Path]:
        """Files a decoder of this architecture runs: counted, byte for byte, in every artifact."""
        mod_file = Path(importlib.util.find_spec(self.module).origin)
        shared = [HERE / name for name in SHARED_CODE]
        return [*shared, *(HERE / c for c in self.code), mod_file]


# The engine files every architecture's decoder runs (the artifact reader, exact integer ops and the
# int16 GEMM kernel, lockstep coding with the match model, context mixing); an architecture adds its
# own module.
SHARED_CODE = ("artifact.py", "intops.py", "gemm16.py", "lockstep.py", "mixing.py")

ARCHS: dict[str, ArchInfo] = {}
_LISTENERS: list[Callable[[ArchInfo], None]] = []


def register_arch(info: ArchInfo) -> ArchInfo:
    if info.name in ARCHS and ARCHS[info.name] != info:
        raise ValueError(f"architecture {info.name!r} is registered twice")
    ARCHS[info.name] = info
    for listener in _LISTENERS:
        listener(info)
    return info


def on_register(listener: Callable[[ArchInfo], None]) -> None:
    """Call ``listener`` for every architecture, now and as more register (the harness makes coders)."""
    _LISTENERS.append(listener)
    for info in list(ARCHS.values()):
        listener(info)


register_arch(ArchInfo(
    "gru", "compbench.models.gru",
    "GRU byte-LM (int8, integer engine) + range coding; model=NAME|PATH (shipped: enwik8, sagas, dickens, ptb, ptb-small)",
    streams=256,  # a GRU step is cheap: more rows per int8 matmul
    batch=128, seq_len=256, size_field="hidden", size_step=8, tiny={"hidden": 48},
))
register_arch(ArchInfo(
    "transformer", "compbench.models.transformer",
    "tiny transformer byte-LM (int8, integer engine, ALiBi) + range coding; model=NAME|PATH, "
    "window=BYTES it attends to (default 256, at most the model's ctx)",
    # Each stream keeps a KV cache of `window` positions per layer (53 MB for 128 streams of the
    # shipped model at 256). 128 rather than 64: on the 1 MB enwik8 test split 1.7545 against
    # 1.7556 bpb and about 30% faster (README, the knob); inputs under 128 KB get 64 or fewer
    # anyway (min_segment), and from 128 KB to about 512 KB it costs 0.1-0.4%.
    streams=128,
    batch=32, seq_len=0, size_field="d_model", size_step=16,
    tiny={"d_model": 32, "layers": 2, "heads": 2, "ctx": 64},
    code=("gru.py",),  # shares BOS and the row quantizer with the GRU
    # The attention window when coding: min(window, the model's ctx). The shipped model was trained
    # with 512; coding with the last 256 costs 0.13% in bpb on enwik8 (ALiBi's steep heads look back
    # less than 200 bytes anyway) and halves the cache each step reads. See the README's knob.
    options=(CodingOption("window", 256, 16, 4096),),
))
