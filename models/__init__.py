"""Byte-level language models, installed as ``compbench.models``; this is the list of what exists.

Each architecture has a torch module that trains, a config dataclass, an ``export`` to int8 tensors
and an integer engine that codes; :data:`ARCHS` ties them together and :func:`load_engine` rebuilds
an engine from artifact bytes (see :mod:`compbench.models.artifact`).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import NamedTuple

import torch

from compbench.errors import ArtifactError

from . import artifact, gru, transformer


class Arch(NamedTuple):
    config: type
    module: type
    export: object
    engine: type


ARCHS: dict[str, Arch] = {
    "gru": Arch(gru.GRUConfig, gru.GRULM, gru.export, gru.IntGRU),
    "transformer": Arch(transformer.TransformerConfig, transformer.TransformerLM, transformer.export, transformer.IntTransformer),
}

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_models() -> dict[str, Path]:
    """Shipped artifacts, keyed ``ARCH-NAME`` (e.g. ``gru-enwik8``)."""
    return {p.stem: p for p in sorted(WEIGHTS_DIR.glob("*.cbnm"))}


def make_config(arch: str, config: dict):
    cls = ARCHS[arch].config
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(config, dict) or set(config) - names:
        raise ArtifactError(f"neural artifact config has unknown fields: {sorted(set(config) - names)}")
    try:
        return cls(**config)
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"neural artifact config is invalid ({err})") from None


def expected_shapes(arch: str, cfg) -> dict[str, tuple[str, list[int]]]:
    """Names, dtypes and shapes an artifact of this config must contain (checked on load)."""
    # Build on the meta device: only shapes and dtypes are needed, not a random init of every weight.
    with torch.device("meta"):
        module = ARCHS[arch].module(cfg)
        return {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in ARCHS[arch].export(module).items()}


def load_engine(blob: bytes):
    """Artifact bytes -> (header, engine). Never unpickles; validates every tensor."""
    header, tensors = artifact.unpack(blob)
    arch = header.get("arch")
    if arch not in ARCHS:
        raise ArtifactError(f"neural artifact has unknown architecture {arch!r}")
    cfg = make_config(arch, header.get("config"))
    want = expected_shapes(arch, cfg)
    got = {k: (str(v.dtype).removeprefix("torch."), list(v.shape)) for k, v in tensors.items()}
    if want != got:
        missing = sorted(set(want) - set(got)) or sorted(k for k in want if want[k] != got.get(k))
        raise ArtifactError(f"neural artifact tensors do not match its config (first mismatch: {missing[:1]})")
    return header, ARCHS[arch].engine(cfg, tensors)
