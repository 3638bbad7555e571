"""Export a neural coder as a folder that runs without compbench installed.

* ``param-golf``: ``evaluate.py``, the engine, ``model.cbnm`` and ``submission.json``. Parameter
  golf counts code bytes plus compressed model bytes against 16,000,000 (decimal); here the code is
  every ``.py`` file in the folder and the model is the artifact (which itself carries a copy of
  the engine code, as every compbench artifact does, so the total is conservative).
  ``submission.json`` has a schema version and is checked by :func:`validate_param_golf`.
* ``decoder``: ``decompress.py``, the engine, ``model.cbnm``, ``decoder.json`` and
  ``requirements.txt``: a decompressor for this coder's payloads. The Large Text Compression
  Benchmark ranks compressed size plus the decompressor's size as a zip archive, so
  :func:`ltcb_zip_bytes` zips the folder the same way, deterministically.

Both folders hold the engine package as ``compbench/models/``: the very files compbench runs and
counts in every artifact (:meth:`compbench.models.ArchInfo.decoder_files`) plus the two that make
it a package (``__init__.py``, ``archs.py``). Their scripts put their own folder first on
``sys.path`` and check that the engine came from it, so a re-evaluation uses the exported bytes
alone. A fresh process runs them (:func:`run_fresh`): ``python -I``, a minimal environment, the
folder as working directory.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from datetime import datetime, timezone
from pathlib import Path

from .zipcheck import SubmissionError

PARAM_GOLF_LIMIT = 16_000_000  # decimal, as parameter-golf counts
SCHEMA_VERSION = 1
STANDALONE = Path(__file__).resolve().parent / "standalone"
MARKERS = ("submission.json", "decoder.json")  # what an exported folder holds (so -f may replace it)
ENGINE_INIT = '"""The compbench engine package, exported: only what decodes and evaluates a model."""\n'
REQUIREMENTS = ("torch", "numpy", "numba", "constriction", "zstandard", "brotli")


def _neural(spec: str):
    from compbench.registry import make_coder

    coder = make_coder(spec)
    if coder.family != "neural":
        raise SubmissionError(f"{spec}: only neural coders export as a folder (a model and its engine)")
    return coder


def _engine_files(arch: str) -> list[tuple[str, Path]]:
    from compbench.models import ARCHS
    from compbench.models.archs import HERE

    files = [HERE / "__init__.py", HERE / "archs.py", *ARCHS[arch].decoder_files()]
    return [(f"compbench/models/{p.name}", p) for p in dict.fromkeys(files)]


def _build(out: Path, force: bool, fill) -> None:
    """Write the folder beside ``out`` and move it into place whole: a failed export leaves nothing,
    and ``force`` replaces only a folder that an earlier export wrote."""
    if out.exists():
        if not force:
            raise SubmissionError(f"{out} exists (pass -f to replace it)")
        if not out.is_dir() or not any((out / m).is_file() for m in MARKERS):
            raise SubmissionError(f"{out} exists and is not an exported folder; not replacing it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        (tmp / "compbench").mkdir()
        (tmp / "compbench" / "__init__.py").write_text(ENGINE_INIT)
        fill(tmp)
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _copy_engine(folder: Path, arch: str) -> None:
    (folder / "compbench" / "models").mkdir(parents=True, exist_ok=True)
    for rel, src in _engine_files(arch):
        shutil.copyfile(src, folder / rel)


def _walk(folder: Path) -> list[Path]:
    """The folder's files, sorted; Python's bytecode caches (written when a script runs) are not part of it."""
    return [p for p in sorted(folder.rglob("*")) if p.is_file() and "__pycache__" not in p.relative_to(folder).parts]


def _files(folder: Path) -> dict[str, dict]:
    return {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()}
            for p in _walk(folder)}


def _options(coder) -> dict:
    o = coder.options
    return {"streams": o.streams, "min_segment": o.min_segment, "match": o.match, "mix": o.mix}


# -- parameter golf -------------------------------------------------------------------------------
def export_param_golf(spec: str, out: str | Path, data: bytes | None = None, eval_info: dict | None = None,
                      name: str = "", force: bool = False) -> dict:
    """Write the parameter-golf folder for ``spec``; returns its ``submission.json``. ``data``: the
    evaluation text whose bpb the record states (compbench's ``bpb_model``, computed here)."""
    coder = _neural(spec)
    blob = coder.artifact()
    arch = coder.model_info["arch"]
    val_bpb = coder.model_bits(data) / len(data) if data else None
    out = Path(out)
    record: dict = {}

    def fill(folder: Path) -> None:
        _copy_engine(folder, arch)
        shutil.copyfile(STANDALONE / "evaluate.py", folder / "evaluate.py")
        (folder / "model.cbnm").write_bytes(blob)
        files = _files(folder)
        code = sum(f["bytes"] for k, f in files.items() if k.endswith(".py"))
        total = code + len(blob)
        if total > PARAM_GOLF_LIMIT:
            raise SubmissionError(f"code {code:,} + model {len(blob):,} = {total:,} bytes, over parameter golf's "
                                  f"{PARAM_GOLF_LIMIT:,}")
        record.update({
            "schema_version": SCHEMA_VERSION, "format": "param-golf", "track": "16mb",
            "name": name or f"compbench {coder.header_spec}", "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
            "blurb": f"{arch} byte-LM, int8 integer engine, exported by compbench",
            "val_bpb": val_bpb, "val_bytes": len(data) if data else None,
            "val_sha256": hashlib.sha256(data).hexdigest() if data else None, "eval": eval_info or {},
            "bytes_total": total, "bytes_code": code, "bytes_model": len(blob), "limit_bytes": PARAM_GOLF_LIMIT,
            "model_file": "model.cbnm", "files": files,
            "coder": {"spec": coder.header_spec, "arch": arch, "options": _options(coder)},
        })
        (folder / "submission.json").write_text(json.dumps(record, indent=1) + "\n")

    _build(out, force, fill)
    return record


def validate_param_golf(folder: str | Path) -> dict:
    """Check a parameter-golf folder against its ``submission.json``: schema version, every listed
    file present with its size and sha256, nothing unlisted but the record, code + model within the limit."""
    folder = Path(folder)
    try:
        record = json.loads((folder / "submission.json").read_text())
    except (OSError, ValueError) as err:
        raise SubmissionError(f"{folder}: no readable submission.json ({err})") from None
    if not isinstance(record, dict) or record.get("schema_version") != SCHEMA_VERSION:
        raise SubmissionError(f"{folder}: submission.json schema_version is {record.get('schema_version')!r}, "
                              f"expected {SCHEMA_VERSION}")
    for key in ("bytes_total", "bytes_code", "bytes_model", "model_file", "files", "coder"):
        if key not in record:
            raise SubmissionError(f"{folder}: submission.json has no {key!r}")
    have = {k: v for k, v in _files(folder).items() if k != "submission.json"}
    if have != record["files"]:
        diff = sorted(set(have) ^ set(record["files"])) or sorted(k for k in have if have[k] != record["files"][k])
        raise SubmissionError(f"{folder}: files differ from submission.json (first: {diff[0]})")
    code = sum(f["bytes"] for k, f in have.items() if k.endswith(".py"))
    model = have.get(record["model_file"], {}).get("bytes", 0)
    if (code, model, code + model) != (record["bytes_code"], record["bytes_model"], record["bytes_total"]):
        raise SubmissionError(f"{folder}: byte counts differ from submission.json")
    if code + model > PARAM_GOLF_LIMIT:
        raise SubmissionError(f"{folder}: {code + model:,} bytes, over {PARAM_GOLF_LIMIT:,}")
    return record


def run_fresh(folder: str | Path, args: list[str], timeout: float = 3600) -> str:
    """Run ``python -I -B SCRIPT args`` in ``folder``, a fresh process with a minimal environment
    that writes no bytecode cache into the folder; returns stdout, or raises SubmissionError with
    the script's last line."""
    folder = Path(folder).resolve()
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder), "LANG": "C.UTF-8"}
    for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if key in os.environ:
            env[key] = os.environ[key]
    try:
        res = subprocess.run([sys.executable, "-I", "-B", *args], cwd=folder, env=env, capture_output=True, text=True,
                             timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SubmissionError(f"{args[0]} ran past {timeout:.0f} s") from None
    if res.returncode != 0:
        lines = (res.stderr or res.stdout).strip().splitlines()
        raise SubmissionError(f"{args[0]} failed: {lines[-1] if lines else f'exit status {res.returncode}'}")
    return res.stdout


def reevaluate(folder: str | Path, text: bytes) -> dict:
    """The folder's own ``evaluate.py`` on ``text``, in a fresh process: its JSON result."""
    with tempfile.TemporaryDirectory(prefix="compbench-eval-") as tmp:
        path = Path(tmp) / "eval.bin"
        path.write_bytes(text)
        return json.loads(run_fresh(folder, ["evaluate.py", str(path), "--json"]).strip().splitlines()[-1])


# -- decompressor (LTCB) ----------------------------------------------------------------------------
def export_decoder(spec: str, out: str | Path, force: bool = False) -> dict:
    """Write the self-contained decompressor folder for ``spec``; returns its sizes (LTCB's count)."""
    from importlib.metadata import PackageNotFoundError, version

    coder = _neural(spec)
    blob = coder.artifact()
    arch = coder.model_info["arch"]

    def pin(pkg: str) -> str:
        try:
            return f"{pkg}=={version(pkg)}"
        except PackageNotFoundError:
            return pkg

    def fill(folder: Path) -> None:
        _copy_engine(folder, arch)
        shutil.copyfile(STANDALONE / "decompress.py", folder / "decompress.py")
        (folder / "model.cbnm").write_bytes(blob)
        (folder / "decoder.json").write_text(json.dumps({
            "schema_version": SCHEMA_VERSION, "format": "decoder", "spec": coder.header_spec, "arch": arch,
            "artifact": "model.cbnm", "options": _options(coder),
            "fingerprint": hashlib.sha256(blob).hexdigest()[:16]}, indent=1) + "\n")
        (folder / "requirements.txt").write_text("".join(pin(p) + "\n" for p in REQUIREMENTS))

    out = Path(out)
    _build(out, force, fill)
    files = _files(out)
    return {"folder": str(out), "files": len(files), "bytes": sum(f["bytes"] for f in files.values()),
            "zip_bytes": ltcb_zip_bytes(out), "spec": coder.header_spec}


def ltcb_zip_bytes(folder: str | Path) -> int:
    """Size of the folder as a zip archive (deflate, level 9, sorted names, fixed timestamps): how the
    Large Text Compression Benchmark counts a decompressor given as source."""
    folder = Path(folder)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for p in _walk(folder):
            info = zipfile.ZipInfo(p.relative_to(folder).as_posix(), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes(), compresslevel=9)
    return len(buf.getvalue())


_DECODER_ZIP: dict[str, int] = {}


def decoder_zip_bytes(spec: str) -> int | None:
    """LTCB size of the decompressor ``export_decoder`` writes for ``spec`` (None: not a neural coder)."""
    from compbench.registry import make_coder

    coder = make_coder(spec)
    if coder.family != "neural":
        return None
    key = coder.header_spec + hashlib.sha256(coder.artifact()).hexdigest()
    if key not in _DECODER_ZIP:
        with tempfile.TemporaryDirectory(prefix="compbench-dec-") as tmp:
            _DECODER_ZIP[key] = export_decoder(spec, Path(tmp) / "decoder")["zip_bytes"]
    return _DECODER_ZIP[key]
