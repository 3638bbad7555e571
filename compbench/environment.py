"""What a result was measured on: machine, package versions and the compbench git commit.

Stored with every run so that results can be compared later without rerunning (asv, pytest-benchmark).
Nothing here imports torch or the coder libraries: versions come from package metadata.
"""

from __future__ import annotations

import os
import platform
import subprocess
import zlib
from importlib import metadata
from pathlib import Path

PACKAGES = ("compbench", "zstandard", "brotli", "pyppmd", "numpy", "numba", "constriction", "torch", "click", "tabulate")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cpu_isa() -> str:
    """The widest matrix instructions this CPU has, as a label for records: "AMX", "AVX-512 VNNI",
    "AVX-512", "AVX2", or "" where /proc/cpuinfo says none of these (or cannot be read)."""
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((set(line.split(":", 1)[1].split()) for line in fh if line.startswith("flags")), set())
    except OSError:
        return ""
    for flag, label in (("amx_bf16", "AMX"), ("avx512_vnni", "AVX-512 VNNI"), ("avx512f", "AVX-512"), ("avx2", "AVX2")):
        if flag in flags:
            return label
    return ""


def machine() -> dict:
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
    }


def packages() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    out["zlib_runtime"] = zlib.ZLIB_RUNTIME_VERSION  # liblzma and libbz2 versions are not exposed by Python
    return out


def git_commit() -> dict:
    """Commit of the compbench source tree, when it runs from a git checkout."""
    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"id": None, "dirty": None}
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
        return {"id": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"id": None, "dirty": None}


def available_memory() -> int | None:
    """Linux MemAvailable in bytes, or None where unknown."""
    kib = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    kib = int(line.split()[1])
    except OSError:
        return None
    return None if kib is None else kib * 1024
