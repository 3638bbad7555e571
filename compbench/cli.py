"""The ``compbench`` command line: thin click commands that parse options, call a module, print.

Tables and JSON go to stdout; progress and notes go to stderr, so ``> results.json`` stays clean.
Every :class:`~compbench.errors.CompbenchError` becomes ``Error: <one line>`` and exit status 1.
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import click

from compbench.reports.tables import FORMATS, SORT_KEYS, TABLEFMT  # stdlib-only module: cheap at start-up

from .errors import CompbenchError
from .submission.golden_plate import DEFAULT_WINDOW  # stdlib-only module (model.py is a string in it)

FORMAT = click.Choice(FORMATS)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except CompbenchError as err:
            raise click.ClickException(str(err)) from None
        except BrokenPipeError:  # `compbench ... | head`
            sys.stderr.close()
            raise SystemExit(0)
        except OSError as err:  # a full disk, a vanished folder: one line, never a traceback
            where = f" {err.filename}" if getattr(err, "filename", None) else ""
            raise click.ClickException(f"cannot read or write{where}: {err.strerror or err}") from None


def _say(quiet: bool):
    return (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))


def _data_dir_option(f):
    return click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="Folder holding the named corpora [env COMPBENCH_DATA; default "
                             "~/.local/share/compbench/data].")(f)


def _store_option(f):
    return click.option("--store", "store_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
                        help="Results store (SQLite) [env COMPBENCH_STORE; default .compbench/results.sqlite].")(f)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="compbench")
def cli():
    """compbench: rank neural byte-LMs and classical coders on one scale.

    Every measurement is a real encode and a byte-exact decode by a decoder rebuilt from the
    artifact bytes alone, reported as bits per byte (payload; model cross-entropy; payload plus
    artifact), artifact bytes, CPU time, throughput and peak memory.

    \b
    Quick start (no data folder needed; runs on the built-in corpus):
      compbench run --coders zlib,bz2,lzma,zstd,brotli,ppmd
      compbench run --coders classical --corpus canterbury --format json
      compbench encode --coder lzma book.txt book.cb && compbench decode book.cb book.out
    """


# -- run ----------------------------------------------------------------------------------------
def _executor_options(f):
    """--jobs, --executor, --address, --retries, --cell-timeout: where cells run (run, tradeoff)."""
    opts = [
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     help="Cells (coder x file) measured at once, one per local process; at most the core count, so "
                          "timings stay honest. With --executor ray: the CPUs of a local Ray instance."),
        click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
                     help="local: serial or --jobs processes; ray: a Ray cluster (pip install 'compbench[ray]')."),
        click.option("--address", default=None, metavar="HOST:PORT",
                     help="The Ray cluster to use (`ray start --head` prints it); none starts a local Ray instance."),
        click.option("--retries", type=click.IntRange(min=0), default=2, show_default=True,
                     help="Retries for a cell whose worker dies or times out, before it is recorded as failed."),
        click.option("--cell-timeout", type=click.FloatRange(min=0), default=0, metavar="SECONDS",
                     help="Stop and retry a cell running longer than this (0: no limit)."),
    ]
    for opt in reversed(opts):
        f = opt(f)
    return f


def _decoder_sizes(say):
    """``run --ltcb``: each neural coder's records get ``decoder_zip_bytes``, the size of its exported
    decompressor folder as a zip (LTCB's count). Other coders have no standalone decoder export."""
    from .submission.folders import decoder_zip_bytes

    def annotate(coder) -> dict:
        if coder.family != "neural":
            return {}
        size = decoder_zip_bytes(coder.located_spec)
        say(f"  decompressor of {coder.located_spec}: {size:,} bytes as a zip")
        return {"decoder_zip_bytes": size}

    return annotate


@cli.command()
@click.option("--coders", default="classical", show_default=True,
              help="Comma list of coder specs or groups, e.g. 'zstd:level=22:long=27,lzma:preset=9e,classical'.")
@click.option("--corpus", default="pystdlib", show_default=True,
              help="Named corpus (see `compbench corpora`), NAME/FILE (silesia/dickens), or any file or folder.")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="all", show_default=True,
              help="Corpus split; coders that train (zstd dict_size=...) fit on the train split.")
@click.option("--chunk-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Code every N-byte chunk independently (Language Modeling Is Compression protocol); 0 = whole files.")
@click.option("--repeat", type=click.IntRange(min=1), default=3, show_default=True,
              help="Timed passes after the warm-up/verification pass; times are min and median.")
@click.option("--max-time", type=click.FloatRange(min=0), default=60.0, show_default=True, metavar="SECONDS",
              help="Stop a direction's timed passes after this long; a coder slower than this is timed from its verification pass.")
@click.option("--budget", default=None, metavar="SIZE",
              help="Artifact budget each row is judged against: 1MB (1,000,000 bytes), 16MB (16,000,000), "
                   "1MiB (1,048,576) or BYTES. Rows record it and whether the artifact fits; those that "
                   "do not rank last.")
@click.option("--bytes", "max_bytes", default="0", show_default=True, metavar="SIZE",
              help="Evaluate only the first SIZE bytes of the split, files in order (train data is whole); 0: all.")
@click.option("--format", "fmt", type=FORMAT, default="github", show_default=True,
              help="Table format; json prints the full per-file records.")
@click.option("--per-file", is_flag=True, help="One table row per file instead of per corpus.")
@click.option("--no-store", is_flag=True, help="Do not save the run in the results store.")
@click.option("--no-memory", is_flag=True, help="Skip peak-memory measurement.")
@click.option("--ltcb", is_flag=True,
              help="Also count each neural coder's standalone decompressor (`compbench export --format decoder`) "
                   "as a zip, the Large Text Compression Benchmark's rule: columns decoder_zip and bpb_ltcb.")
@_executor_options
@click.option("--resume", is_flag=True,
              help="Skip cells already in the store (same coder spec, file bytes, artifact, chunk size and budget, "
                   "with a verified round trip): rerunning an interrupted sweep finishes only what is missing. "
                   "Off by default, because rerunning is also how a changed coder is measured again.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_data_dir_option
@_store_option
def run(coders, corpus, split, chunk_size, repeat, max_time, budget, max_bytes, fmt, per_file, no_store, no_memory, ltcb,
        jobs, executor, address, retries, cell_timeout, resume, quiet, data_dir, store_path):
    """Measure coders on a corpus and print the ranked table.

    Every file is encoded, decoded by a decoder rebuilt from the artifact alone, and compared byte
    for byte; then timed REPEAT times. Results go to the store (`compbench leaderboard`).

    \b
    Each coder x file is one cell. Cells run one at a time here, in --jobs local processes, or on a
    Ray cluster (--executor ray --address HOST:PORT); each is stored as it finishes, and --resume
    skips those already stored. See the README's "Sweeps past one machine"."""
    from . import environment
    from .measure import MeasureConfig
    from .runner import RunConfig, run as run_bench
    from .store import Store
    from compbench.reports.tables import aggregate, render

    say = _say(quiet)
    from .units import parse_size

    cfg = RunConfig(coders=coders, corpus=corpus, split=split, data_dir=data_dir, max_bytes=parse_size(max_bytes),
                    measure=MeasureConfig(repeat=repeat, chunk_size=chunk_size, memory=not no_memory,
                                         max_time_s=max_time, budget=_budget(budget)),
                    jobs=jobs, executor=executor, address=address, retries=retries, cell_timeout=cell_timeout,
                    resume=resume)
    store = None if no_store else Store(store_path)
    env = {"machine": environment.machine(), "packages": environment.packages(), "commit": environment.git_commit()}
    annotate = _decoder_sizes(say) if ltcb else None
    result = run_bench(cfg, progress=say, store=store, command=shlex.join(["compbench", *sys.argv[1:]]),
                       environment=env, annotate=annotate)
    records = [r.to_dict() for r in result.records]
    if store is not None:
        for coder in result.coders:
            try:
                store.save_artifact(coder.artifact_fingerprint().hex(), coder.artifact())
            except CompbenchError:  # a coder that failed before it had an artifact
                pass
        if result.run_id is not None:
            say(f"stored as run {result.run_id} in {store.path}")
        elif records:
            say(f"every cell was already in {store.path}; nothing measured (without --resume, all are measured)")
    if records:
        click.echo(render(aggregate(records, per_file=per_file), fmt, records=records))
    for failure in result.failures:
        click.echo(f"Error: {failure}", err=True)
    bad = [f"{r.label} on {r.file}" for r in result.records if not r.roundtrip_ok]
    if bad:
        click.echo(f"Error: round trip FAILED for {', '.join(bad)}", err=True)
    if not result.ok:
        raise SystemExit(1)


def _budget(text: str | None) -> int | None:
    if text is None:
        return None
    from .units import parse_size

    value = parse_size(text)
    if value <= 0:
        raise CompbenchError("--budget must be a positive size, e.g. 1MB or 16MB")
    return value


# -- encode / decode ----------------------------------------------------------------------------
class _Progress:
    """A progress line on stderr for long work: bytes done, rate and ETA, at most twice a second."""

    def __init__(self, what: str, total: int, enabled: bool):
        self.what, self.total, self.enabled = what, total, enabled and total >= 8 << 20
        self.t0, self.last = time.monotonic(), 0.0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.5:
            return
        self.last = now
        rate = done / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("nan")
        click.echo(f"\r  {self.what}: {done / 1e6:,.1f} / {self.total / 1e6:,.1f} MB ({100 * done / max(self.total, 1):.0f}%), "
                   f"{rate / 1e6:.2f} MB/s, ETA {eta:,.0f} s ", err=True, nl=False)

    def set_total(self, total: int) -> None:
        self.total, self.enabled = total, self.enabled and total >= 8 << 20

    def close(self) -> None:
        if self.enabled and self.last:
            click.echo("", err=True)


def _check_output(path: str, force: bool, input_path: str) -> None:
    if path == "-":
        return
    out = Path(path)
    if input_path != "-" and out.exists() and out.resolve() == Path(input_path).resolve():
        raise CompbenchError("output and input are the same file")
    if out.exists() and not force:
        raise CompbenchError(f"{out} exists; pass --force to overwrite it")
    if not out.parent.is_dir():
        raise CompbenchError(f"cannot write {out}: folder {out.parent} does not exist")


def _open_output(path: str):
    """stdout, or an atomic file: OUT appears only once the whole result is written and verified."""
    import contextlib

    from .fsutil import atomic_open

    if path == "-":
        return contextlib.nullcontext(sys.stdout.buffer)
    return atomic_open(path)


def _open_input(path: str):
    """(binary file, size). stdin is spooled to a temporary file first: the payload header records the
    length, and memory stays flat whatever comes down the pipe."""
    if path == "-":
        spool = tempfile.TemporaryFile()
        while True:
            block = sys.stdin.buffer.read(1 << 20)
            if not block:
                break
            spool.write(block)
        size = spool.tell()
        spool.seek(0)
        return spool, size
    try:
        fh = open(path, "rb")
    except OSError as err:
        raise CompbenchError(f"cannot read {path}: {err.strerror}") from None
    return fh, os.fstat(fh.fileno()).st_size


@cli.command()
@click.option("--coder", "spec", required=True, help="Coder spec, e.g. lzma, 'zstd:level=19', 'ppmd:order=6', gru.")
@click.option("--chunk-size", type=click.IntRange(min=0), default=0, help="Code N-byte chunks independently.")
@click.option("--train", "train_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Training file for coders that fit (zstd dict_size=N).")
@click.option("--artifact-out", type=click.Path(dir_okay=False), default=None,
              help="Also write the artifact here (it is always kept in the store's artifact folder).")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress or summary on stderr.")
@_store_option
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="OUT")
def encode(spec, chunk_size, train_path, artifact_out, force, quiet, store_path, input_path, output_path):
    """Compress IN to a self-describing payload OUT ('-' for stdin/stdout).

    Streaming coders (all the classical ones) code any file size in flat memory; neural coders
    hold the input in memory. OUT appears only once it is completely written."""
    from .payload import write_stream
    from .registry import make_coder
    from .store import Store

    coder = make_coder(spec)
    if coder.stores_eval_data:
        raise CompbenchError(f"{coder.header_spec} stores part of the evaluated data in its artifact; it is a "
                             "benchmark setting for `compbench run`, not a file compressor")
    if coder.needs_fit:
        if not train_path:
            raise CompbenchError(f"{coder.header_spec} must be trained first: pass --train FILE")
        coder.fit(Path(train_path).read_bytes())
    _check_output(output_path, force, input_path)
    fh, size = _open_input(input_path)
    progress = _Progress(f"encoding {input_path}", size, not quiet)
    if not coder.streaming:
        coder.on_progress = progress  # the neural coders report from inside their coding loop
    with fh, _open_output(output_path) as out:
        n_out = write_stream(coder, fh.read, size, out.write, chunk_size=chunk_size, progress=progress)
    progress.close()
    artifact = coder.artifact()
    if artifact and type(coder).find_artifact(coder.artifact_fingerprint()) is None:  # shipped ones need no copy
        saved = Store(store_path).save_artifact(coder.artifact_fingerprint().hex(), artifact)
        if artifact_out:
            _check_output(artifact_out, force, input_path)
            from .fsutil import atomic_write

            atomic_write(artifact_out, artifact)
        if not quiet:
            click.echo(f"artifact {coder.artifact_fingerprint().hex()} ({len(artifact):,} bytes) saved to {saved}; "
                       "decoding needs it", err=True)
    if not quiet:
        ratio = f"{8 * n_out / size:.3f} bpb" if size else "empty input"
        click.echo(f"{input_path}: {size:,} -> {n_out:,} bytes ({ratio}) with {coder.header_spec}", err=True)


@cli.command()
@click.option("--artifact", "artifact_path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Artifact file, if the payload needs one that is neither shipped nor in the store's artifact folder.")
@click.option("--coder", "coder_spec", default=None,
              help="Your own spec for the payload's coder; needed for coders that run programs "
                   "(external: give the commands you trust; golden-plate: 'golden-plate:zip=FILE', the submission you trust).")
@click.option("--allow-external", is_flag=True,
              help="Run the programs an external-coder payload names. Only for payloads you made yourself.")
@click.option("--max-output", default="4GiB", show_default=True, metavar="SIZE",
              help="Refuse payloads that claim more original bytes than this.")
@click.option("-f", "--force", is_flag=True, help="Overwrite OUT if it exists.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_store_option
@click.argument("input_path", metavar="IN")
@click.argument("output_path", metavar="OUT")
def decode(artifact_path, coder_spec, allow_external, max_output, force, quiet, store_path, input_path, output_path):
    """Decompress payload IN to OUT; the coder is read from the payload itself.

    Payloads are data, never programs: a payload cannot make decode run a command, and every size
    it claims is checked before anything is allocated. The output is checked against the stored
    length and CRC-32; OUT appears only if it passes."""
    from .decoding import DecodePolicy, decode_file
    from .store import Store
    from .units import parse_size

    policy = DecodePolicy(allow_external=allow_external, coder_spec=coder_spec, max_output=parse_size(max_output))
    artifact = Path(artifact_path).read_bytes() if artifact_path else None
    _check_output(output_path, force, input_path)
    fh, size = _open_input(input_path)
    lookups = (Store(store_path).find_artifact,)
    with fh, _open_output(output_path) as out:
        progress = _Progress(f"decoding {input_path}", 1 << 62, not quiet)
        decode_file(fh, out.write, artifact, policy=policy, lookups=lookups, progress=progress)
    progress.close()


@cli.command()
@click.argument("input_path", metavar="PAYLOAD")
def inspect(input_path):
    """Show a payload's header: coder, sizes, chunking, artifact fingerprint.

    Every checksum that needs no decoding (header, body pieces) is checked; a damaged payload is an
    error (exit 1)."""
    from .payload import verify_structure

    fh, size = _open_input(input_path)
    with fh:
        head = fh.read(5)
        fh.seek(0)
        h, _ = verify_structure(fh.read() if head[4:5] == b"\x01" else fh)
    click.echo(f"coder:            {h.spec}\nformat version:   {h.version}\noriginal bytes:   {h.size:,}\n"
               f"payload bytes:    {size:,}\nheader bytes:     {h.header_bytes}\n"
               f"chunk size:       {h.chunk_size or 'whole input'}\nartifact:         {h.fingerprint.hex()}")


# -- listings -----------------------------------------------------------------------------------
@cli.command("coders")
@click.option("--format", "fmt", type=FORMAT, default="github", show_default=True)
def coders_cmd(fmt):
    """List every registered coder, its options and groups (the registry)."""
    import dataclasses
    import json

    from tabulate import tabulate

    from . import registry

    table = registry.groups()
    rows = []
    for name, cls in registry.coders().items():
        opts = ", ".join(f"{f.name}={f.default}" for f in dataclasses.fields(cls.Options))
        rows.append({"coder": name, "family": cls.family, "groups": ",".join(g for g, m in table.items() if name in m and g != "all"),
                     "options (defaults)": opts or "-", "description": cls.description, "source": registry.source(name)})
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        _echo_csv(rows)
    else:
        tablefmt = TABLEFMT[fmt]
        click.echo(tabulate([{k: v for k, v in r.items() if k != "source"} for r in rows], headers="keys", tablefmt=tablefmt))
        click.echo("\ngroups: " + "; ".join(f"{g} = {','.join(m)}" for g, m in sorted(table.items())), err=True)


def _echo_csv(rows: list[dict]) -> None:
    import csv

    w = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    w.writerows(rows)


@cli.command()
@click.option("--format", "fmt", type=FORMAT, default="github", show_default=True)
@_data_dir_option
def corpora(fmt, data_dir):
    """List the named corpora and whether the data folder has them."""
    import json

    from tabulate import tabulate

    from .corpus import CORPORA, available, default_data_dir
    from .fetch import SOURCES

    root = data_dir or default_data_dir()
    rows = [{"corpus": s.name, "available": "yes" if available(s, root) else "no",
             "splits": "official" if s.official else "tail rule", "fetch": "yes" if s.name in SOURCES else "no",
             "description": s.description} for s in CORPORA.values()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
    elif fmt == "csv":
        _echo_csv(rows)
    else:
        tablefmt = TABLEFMT[fmt]
        click.echo(tabulate(rows, headers="keys", tablefmt=tablefmt))
    click.echo(f"data folder: {root}", err=True)


@cli.group(cls=_Group)
def data():
    """Corpus data: download standard corpora."""


@data.command()
@click.argument("name")
@_data_dir_option
def fetch(name, data_dir):
    """Download corpus NAME from its publisher into the data folder, verifying SHA-256 checksums.

    \b
    NAME: canterbury, calgary, canterbury-large, enwik8, tinyshakespeare, ptb, ptb-char,
          wikitext-2, silesia. pystdlib is built in (nothing to fetch); icelandic and
          tinystories were made locally and have no public download to verify."""
    from .corpus import BUILTIN, default_data_dir, resolve_name
    from .fetch import fetch as do_fetch

    if resolve_name(name) == BUILTIN:
        click.echo(f"{BUILTIN} is built in: it is read from this Python's standard library; nothing to fetch", err=True)
        return

    root = data_dir or default_data_dir()
    for path in do_fetch(name, root):
        click.echo(f"verified and saved {path}", err=True)


# -- results ------------------------------------------------------------------------------------
@cli.command()
@click.option("--run", "run_ref", default=None, help="Only this run (id, 'latest', 'latest~1'); default: newest result per coder.")
@click.option("--corpus", default=None, help="Only this corpus.")
@click.option("--split", default=None, help="Only this split.")
@click.option("--sort", type=click.Choice(SORT_KEYS), default="bpb",
              show_default=True, help="Ranking key within each corpus.")
@click.option("--per-file", is_flag=True, help="One row per file.")
@click.option("--budget", default=None, metavar="SIZE",
              help="Judge every row's artifact against this budget (1MB, 16MB, 1MiB, BYTES); those over it rank last.")
@click.option("--format", "fmt", type=FORMAT, default="github", show_default=True)
@_store_option
def leaderboard(run_ref, corpus, split, sort, per_file, budget, fmt, store_path):
    """Rank stored results, per corpus and split (newest result of each coder)."""
    from .store import Store
    from compbench.reports.tables import aggregate, render

    store = Store(store_path)
    records = store.records(store.resolve_run(run_ref)) if run_ref else store.latest_records()
    records = [r for r in records if (corpus is None or r["corpus"] == corpus) and (split is None or r["split"] == split)]
    if not records:
        raise CompbenchError("no stored results match")
    limit = _budget(budget)
    if limit is not None:  # any stored record can be judged against any budget: its artifact is known
        records = [{**r, "budget": limit, "fits_budget": r["artifact_bytes"] <= limit} for r in records]
    click.echo(render(aggregate(records, per_file=per_file, sort=sort), fmt, records=records))


@cli.command()
@click.argument("run_a")
@click.argument("run_b")
@click.option("--format", "fmt", type=FORMAT, default="github", show_default=True)
@click.option("--fail-above", type=float, default=None, metavar="PCT",
              help="Exit 1 if any coder's bpb got worse by more than PCT percent (a CI gate).")
@_store_option
def compare(run_a, run_b, fmt, fail_above, store_path):
    """Show what changed between two runs (ids, 'latest', 'latest~1')."""
    from .store import Store
    from compbench.reports.tables import aggregate, compare as do_compare, render_compare

    store = Store(store_path)
    a, b = store.resolve_run(run_a), store.resolve_run(run_b)
    rows = do_compare(aggregate(store.records(a)), aggregate(store.records(b)))
    click.echo(render_compare(rows, fmt))
    changed = sorted({f"{r['corpus']} [{r['split']}]" for r in rows if r["status"] == "corpus changed"})
    if changed:
        click.echo(f"warning: the corpus bytes differ between the runs for {', '.join(changed)} "
                   "(another Python version, data folder or split): those rows compare different inputs", err=True)
    if fail_above is not None:
        worse = [r for r in rows if r["delta_pct"] is not None and r["delta_pct"] > fail_above]
        if worse:
            names = ", ".join(f"{r['label']} on {r['corpus']} ({r['delta_pct']:+.2f}%)" for r in worse)
            click.echo(f"Error: bpb worse by more than {fail_above}%: {names}", err=True)
            raise SystemExit(1)


@cli.command()
@_store_option
def runs(store_path):
    """List stored runs."""
    from tabulate import tabulate

    from .store import Store

    rows = [{"run": r["id"], "created": r["created"], "records": r["n_records"],
             "commit": (r["commit"] or "-")[:10] + ("+" if r["dirty"] else ""), "command": r["command"]}
            for r in Store(store_path).runs()]
    click.echo(tabulate(rows, headers="keys", tablefmt="simple"))

@cli.group(cls=_Group)
def report():
    """Reports: tables, plots and the data behind them, written to a folder."""


@report.command("chunking")
@click.option("--coders", default="zlib,lzma,zstd,ppmd", show_default=True, help="Coders to chunk (any that need no training).")
@click.option("--corpus", default="enwik8", show_default=True, help="Corpus (see `compbench corpora`).")
@click.option("--split", type=click.Choice(["all", "train", "val", "test"]), default="test", show_default=True)
@click.option("--bytes", "max_bytes", default="200KB", show_default=True, metavar="SIZE",
              help="Use the first SIZE bytes (lzma -9e sets up a 64 MiB dictionary per chunk: small chunks are slow).")
@click.option("--chunk-sizes", default="256,512,1024,2048,4096,16384,0", show_default=True,
              help="Comma list of chunk sizes; 0 is the whole input.")
@click.option("--out", default="reports/chunking", show_default=True, type=click.Path(file_okay=False),
              help="Report folder: report.md, chunking.png, chunking.csv, chunking.json.")
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_data_dir_option
def report_chunking(coders, corpus, split, max_bytes, chunk_sizes, out, quiet, data_dir):
    """The cost of coding independent chunks ("Language Modeling Is Compression", Table 1), per coder
    and chunk size, with real round trips; writes a report folder with a plot."""
    from compbench.reports.chunking import ChunkingConfig, run_chunking

    from .units import parse_size

    try:
        sizes = tuple(int(x) for x in chunk_sizes.split(",") if x.strip())
    except ValueError:
        raise CompbenchError(f"--chunk-sizes takes a comma list of integers, got {chunk_sizes!r}") from None
    if not sizes or any(x < 0 for x in sizes):
        raise CompbenchError("--chunk-sizes needs at least one size, none negative")
    cfg = ChunkingConfig(coders=coders, corpus=corpus, split=split, max_bytes=parse_size(max_bytes),
                         chunk_sizes=sizes, out=out, data_dir=str(data_dir) if data_dir else None)
    rows = run_chunking(cfg, say=_say(quiet))
    click.echo((Path(out) / "report.md").read_text())
    click.echo(f"wrote {out}/report.md, chunking.png, chunking.csv, chunking.json ({len(rows)} cells)", err=True)


@cli.command()
@click.option("--budget", default="1MB", show_default=True, metavar="SIZE",
              help="The artifact budget to split (1MB = 1,000,000 bytes, 16MB, 1MiB, BYTES).")
@click.option("--corpus", default="enwik8", show_default=True, help="Corpus (see `compbench corpora`).")
@click.option("--split", type=click.Choice(["all", "val", "test"]), default="test", show_default=True,
              help="Evaluated split; context prefixes store text from the train split (all: paid only).")
@click.option("--coders", default="ppmd,zstd,zlib,gru", show_default=True,
              help="Coders to split the budget for; each must take priming (zlib, zstd, ppmd, gru, transformer).")
@click.option("--kinds", default="context,paid", show_default=True,
              help="Prefix kinds: context (train text) and/or paid (evaluated text, rows flagged).")
@click.option("--shares", default="0.05,0.1,0.25,0.5", show_default=True,
              help="Fractions of the budget given to stored text; 'all that is left' always runs too.")
@click.option("--store-coder", default="ppmd", show_default=True, help="Coder that compresses the stored text.")
@click.option("--models", default="", metavar="PATHS",
              help="Comma list of extra neural models (.cbnm or `compbench train --out` folders) to sweep.")
@click.option("--train-minutes", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Also train small GRUs (--train-sizes) for this long each, kept beside the store and reused.")
@click.option("--train-sizes", default="250KB,500KB", show_default=True, metavar="SIZES",
              help="Artifact budgets of the small GRUs --train-minutes trains.")
@click.option("--bytes", "max_bytes", default="0", show_default=True, metavar="SIZE",
              help="Evaluate only the first SIZE bytes of the split (for slow coders); 0: all of it.")
@click.option("--out", default=None, type=click.Path(file_okay=False),
              help="Report folder (default reports/tradeoff-CORPUS-BUDGET).")
@_executor_options
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
@_store_option
@_data_dir_option
def tradeoff(budget, corpus, split, coders, kinds, shares, store_coder, models, train_minutes, train_sizes, max_bytes,
             out, jobs, executor, address, retries, cell_timeout, quiet, store_path, data_dir):
    """How a byte budget is best split between a model and stored data.

    Sweeps each coder alone, with a context prefix (train text) and with a paid prefix (evaluated
    text, flagged), the stored part given each share of the budget; every cell is a real round
    trip kept in the results store, so an interrupted sweep resumes where it stopped. Writes
    report.md, pareto.png, coverage.png, split.png, tradeoff.csv and tradeoff.json.

    \b
    compbench tradeoff --budget 1MB --corpus enwik8 --split test --coders ppmd,zstd,gru
    compbench tradeoff --budget 16MB --corpus silesia --split all --kinds paid --coders ppmd
    """
    from compbench.reports.tradeoff import TradeoffConfig, run_tradeoff

    from .units import parse_size

    try:
        share_list = tuple(float(x) for x in shares.split(",") if x.strip())
    except ValueError:
        raise CompbenchError(f"--shares takes a comma list of fractions, got {shares!r}") from None
    cfg = TradeoffConfig(
        budget=_budget(budget), corpus=corpus, split=split, coders=coders,
        kinds=tuple(k.strip() for k in kinds.split(",") if k.strip()), shares=share_list, store_coder=store_coder,
        models=tuple(m.strip() for m in models.split(",") if m.strip()), train_minutes=train_minutes,
        train_sizes=tuple(parse_size(x) for x in train_sizes.split(",") if x.strip()), out=out or "",
        max_bytes=parse_size(max_bytes),
        data_dir=str(data_dir) if data_dir else None, store_path=str(store_path) if store_path else None,
        jobs=jobs, executor=executor, address=address, retries=retries, cell_timeout=cell_timeout)
    rows = run_tradeoff(cfg, say=_say(quiet))
    click.echo((cfg.out_dir / "report.md").read_text())
    click.echo(f"wrote {cfg.out_dir}/report.md, pareto.png, coverage.png, split.png, tradeoff.csv, tradeoff.json "
               f"({len(rows)} cells)", err=True)


@cli.command()
@click.argument("zip_path", metavar="SUBMISSION.zip", type=click.Path(dir_okay=False))
@click.option("--no-run", is_flag=True, help="Only inspect the zip; do not import model.py.")
@click.option("--score", "score_corpus", default=None, metavar="CORPUS|PATH",
              help="Also score bpb the challenge's way on this corpus (--split) or file.")
@click.option("--split", type=click.Choice(["all", "val", "test"]), default="test", show_default=True)
@click.option("--bytes", "max_bytes", default="0", metavar="SIZE", help="Score only the first SIZE bytes.")
@click.option("--test-bytes", default="1MB", show_default=True, metavar="SIZE",
              help="Hidden test size to project the 10-minute limit for.")
@_data_dir_option
def check(zip_path, no_run, score_corpus, split, max_bytes, test_bytes, data_dir):
    """Check a Golden-Plate submission zip: safe to open, within the limits, and working.

    \b
    1. Refused with one line before anything runs: paths outside the folder, symlinks and devices,
       zip bombs, archives inside (except .npz weights), pickles anywhere (by name, by content,
       object arrays in .npy/.npz).
    2. Limits: 1 MB zip (1,048,576 bytes, the validator's rule; also shown against 1,000,000),
       50 MB uncompressed, model.py at the top.
    3. model.py is imported in a child process, in a temporary folder, with 4 GB of address space
       and a CPU-time limit; the validator's batch of 1024 random contexts (0-512 bytes) must give
       finite logits of shape (1024, 256) in 5 s. A batch of 1024 full 512-byte contexts (what
       scoring gives) is timed and projected for --test-bytes against 10 minutes.
    4. --score: bpb as the challenge computes it (previous <= 512 bytes, softmax of the logits).
    """
    from .submission.zipcheck import MB, SubmissionError, ZipLimits, inspect_zip
    from .units import parse_size

    limits = ZipLimits()
    try:
        report = inspect_zip(zip_path, limits)
    except SubmissionError as err:
        raise CompbenchError(f"{zip_path}: refused: {err}") from None
    failed = []

    def show(what, detail, ok):
        if not ok:
            failed.append(what)
        click.echo(f"{'ok  ' if ok else 'FAIL'} {what}: {detail}")

    show("zip size", f"{report.zip_bytes:,} bytes = {report.zip_bytes / MB:.4f} MiB of 1 MiB "
                     f"({report.zip_bytes / 1e6:.4f} of 1,000,000-byte MB)", report.zip_bytes <= limits.max_zip_bytes)
    ratio = report.total_bytes / max(1, report.zip_bytes)
    show("uncompressed", f"{report.total_bytes:,} bytes of {limits.max_total_bytes:,} "
                         f"({ratio:.2f}x the zip)", report.total_bytes <= limits.max_total_bytes)
    show("files", f"{len(report.entries)} (model.py at the top)", True)
    for name, arrays in report.arrays.items():
        show(f"arrays in {name}", ", ".join(arrays) or "none", True)
    if not no_run:
        import numpy as np

        from .submission.sandbox import Sandbox, random_contexts, score

        try:
            with Sandbox(zip_path) as sb:
                if not sb.network_isolated:
                    click.echo("note: this machine cannot give the child its own network namespace; it ran with the "
                               "network of this user", err=True)
                logits, seconds = sb.predict(random_contexts(1024))
                show("predict", f"1024 contexts of 0-512 bytes -> {logits.shape}, finite: {bool(np.isfinite(logits).all())}",
                     bool(np.isfinite(logits).all()))
                show("timing", f"{seconds:.2f} s for the validator's batch of 1024 random contexts "
                               "(it warns above 5 s)", seconds <= 5)
                # Scoring gives nearly every position a full 512-byte context: project from that batch.
                _, full = sb.predict(random_contexts(1024, min_len=512, seed=1))
                n_test = parse_size(test_bytes)
                projected = full * n_test / 1024
                show("projection", f"{full:.2f} s per batch of 1024 full 512-byte contexts; {n_test:,} positions -> "
                                   f"about {projected / 60:.1f} min of the 10-minute limit", projected <= 600)
                if score_corpus:
                    from .corpus import load_corpus

                    data = load_corpus(score_corpus, split, data_dir).head(parse_size(max_bytes)).joined()
                    bpb, secs = score(sb, data)
                    show("score", f"{bpb:.4f} bpb on {score_corpus} [{split}], {len(data):,} bytes "
                                  f"({secs:.1f} s in predict)", True)
        except SubmissionError as err:
            raise CompbenchError(f"{zip_path}: {err}") from None
    if failed:
        raise SystemExit(1)


@cli.command()
@click.option("--coder", "spec", required=True, help="Neural coder spec: gru, 'gru:model=sagas', 'gru:model=runs/x'.")
@click.option("--format", "fmt", type=click.Choice(["golden-plate", "param-golf", "decoder"]), default="golden-plate",
              show_default=True, help="golden-plate: a 1 MB zip (model.py); param-golf: a 16,000,000-byte folder "
                                      "(evaluate.py, submission.json); decoder: a decompressor folder (decompress.py).")
@click.option("--window", type=click.IntRange(min=0), default=DEFAULT_WINDOW, show_default=True,
              help="golden-plate: bytes of each context the model reads (0: all it is given). The challenge gives "
                   "512; 128 costs about 0.13% bpb and a quarter of the time (see the README).")
@click.option("--score", "score_corpus", default=None, metavar="CORPUS|PATH",
              help="param-golf and decoder: evaluate on this corpus (--split) or file, then re-evaluate from the "
                   "exported folder alone in a fresh process and compare.")
@click.option("--split", type=click.Choice(["all", "val", "test"]), default="test", show_default=True)
@click.option("--bytes", "max_bytes", default="0", metavar="SIZE", help="Evaluate only the first SIZE bytes.")
@click.option("--name", default="", help="param-golf: the record's name (submission.json).")
@click.option("-o", "--out", "out_path", required=True, type=click.Path(),
              help="The zip (golden-plate) or folder (param-golf, decoder) to write.")
@click.option("-f", "--force", is_flag=True, help="Replace OUT if it exists (a folder only if an export wrote it).")
@_data_dir_option
def export(spec, fmt, window, score_corpus, split, max_bytes, name, out_path, force, data_dir):
    """Export a neural coder as a competition submission or a standalone decompressor.

    \b
    compbench export --coder gru --format golden-plate -o submission.zip
    compbench check submission.zip --score enwik8 --bytes 20KB
    compbench export --coder gru --format param-golf --score enwik8 --bytes 100KB -o pg/
    compbench export --coder gru --format decoder --score enwik8 --bytes 100KB -o dec/
    """
    from .submission.zipcheck import SubmissionError

    try:
        if fmt == "golden-plate":
            from .submission.golden_plate import export_golden_plate

            if Path(out_path).exists() and not force:
                raise CompbenchError(f"{out_path} exists (pass -f to overwrite)")
            info = export_golden_plate(spec, out_path, window=window)
            click.echo(f"wrote {out_path}: {info['zip_bytes']:,} bytes = {info['mib']:.4f} MiB of the 1 MiB limit "
                       f"({info['mb']:.4f} MB of 1,000,000 bytes); check it with `compbench check {out_path}`")
            return
        data, eval_info = None, None
        if score_corpus:
            from .corpus import load_corpus
            from .units import parse_size

            corpus = load_corpus(score_corpus, split, data_dir).head(parse_size(max_bytes))
            data = corpus.joined()
            eval_info = {"corpus": corpus.name, "split": split, "bytes": len(data), "corpus_sha256": corpus.sha256}
        if fmt == "param-golf":
            _export_param_golf(spec, out_path, data, eval_info, name, force)
        else:
            _export_decoder(spec, out_path, data, force)
    except SubmissionError as err:
        raise CompbenchError(str(err)) from None


def _export_param_golf(spec, out_path, data, eval_info, name, force) -> None:
    from .submission.folders import reevaluate, validate_param_golf, export_param_golf
    from .submission.zipcheck import SubmissionError

    say = lambda msg: click.echo(msg, err=True)  # noqa: E731
    if data:
        say(f"evaluating {len(data):,} bytes with compbench ...")
    rec = export_param_golf(spec, out_path, data, eval_info, name=name, force=force)
    validate_param_golf(out_path)
    click.echo(f"wrote {out_path}/: code {rec['bytes_code']:,} + model {rec['bytes_model']:,} = {rec['bytes_total']:,} "
               f"bytes of {rec['limit_bytes']:,}")
    if data:
        say("re-evaluating from the folder alone, in a fresh process ...")
        again = reevaluate(out_path, data)
        same = again["val_bpb"] == rec["val_bpb"]
        click.echo(f"val_bpb {rec['val_bpb']:.6f} (compbench) / {again['val_bpb']:.6f} (the folder's evaluate.py, "
                   f"fresh process): {'identical' if same else 'DIFFERENT'}")
        if not same:
            raise SubmissionError("the exported folder re-evaluates to a different bpb")


def _export_decoder(spec, out_path, data, force) -> None:
    import tempfile

    from .registry import make_coder
    from .submission.folders import export_decoder, run_fresh
    from .submission.zipcheck import SubmissionError

    info = export_decoder(spec, out_path, force=force)
    click.echo(f"wrote {out_path}/: {info['files']} files, {info['bytes']:,} bytes; as a zip (how the LTCB counts a "
               f"decompressor) {info['zip_bytes']:,} bytes")
    if data:
        click.echo(f"encoding {len(data):,} bytes with compbench, decoding with the folder's decompress.py ...", err=True)
        payload = make_coder(spec).encode(data)
        with tempfile.TemporaryDirectory(prefix="compbench-dec-") as tmp:
            src, out = Path(tmp) / "payload.cbp", Path(tmp) / "out.bin"
            src.write_bytes(payload)
            run_fresh(out_path, ["decompress.py", str(src), str(out)])
            ok = out.read_bytes() == data
        n = len(data)
        click.echo(f"decoded in a fresh process: {'identical' if ok else 'DIFFERENT'}; payload {len(payload):,} bytes = "
                   f"{8 * len(payload) / n:.4f} bpb; with the decompressor zip {8 * (len(payload) + info['zip_bytes']) / n:.4f} bpb")
        if not ok:
            raise SubmissionError("the exported decompressor decoded different bytes")


def _parse_sizes(items: tuple[str, ...]) -> dict[str, list[int]]:
    """--set FIELD=N[,N...] -> {field: [values]}; several values make a grid."""
    out: dict[str, list[int]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        values = [v.strip() for v in value.split(",")]
        if not sep or not all(v.isdigit() for v in values):
            raise CompbenchError(f"--set expects FIELD=INTEGER[,INTEGER...], got {item!r} "
                                 "(e.g. --set hidden=256 --set layers=2, or a grid: --set hidden=256,424,544)")
        out[key.strip()] = [int(v) for v in values]
    return out


@cli.command()
@click.option("--model", "arch", required=True, metavar="ARCH",
              help="Architecture: gru, transformer, or any registered with compbench.models.register_arch.")
@click.option("--corpus", required=True, help="Corpus name (compbench corpora); trains on its train split only.")
@click.option("--budget", default="1MB", show_default=True,
              help="Artifact budget (1MB = 1,000,000 bytes); the model is sized so its int8 artifact fits.")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None, help="Train for this much wall time.")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Train for this many optimizer steps.")
@click.option("--out", required=True, type=click.Path(file_okay=False),
              help="Output folder: model.cbnm, train.json, checkpoint.pt (rerun to resume).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--set", "sizes", multiple=True, metavar="FIELD=N[,N...]",
              help="Fix a config field instead of fitting the budget (gru: hidden, layers, embed; transformer: d_model, "
                   "layers, heads, ctx, mlp_mult). Several values train a grid, one model per combination, in "
                   "OUT/FIELD=N,.../ (on --jobs or --executor ray).")
@click.option("--batch", type=click.IntRange(min=1), default=None, help="Sequences per step (default: the architecture's; GRU 128, transformer 32).")
@click.option("--seq-len", type=click.IntRange(min=8), default=None, help="Bytes per sequence (default: the architecture's; GRU 256, transformer its context).")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None, help="Peak learning rate.")
@click.option("--dropout", type=click.FloatRange(min=0, max=1, max_open=True), default=0.1, show_default=True,
              help="Training dropout on embeddings and residual branches; the artifact has none.")
@click.option("--weight-decay", type=click.FloatRange(min=0), default=0.1, show_default=True,
              help="AdamW weight decay on matrices.")
@click.option("--device", default="cpu", show_default=True, help="cpu, or cuda where a GPU exists.")
@click.option("--precision", type=click.Choice(["auto", "bf16", "fp32"]), default="auto", show_default=True,
              help="auto: bf16 autocast where the CPU has AMX/AVX512-BF16 (or on CUDA), else fp32.")
@click.option("--threads", type=click.IntRange(min=0), default=0, help="torch threads (0: torch's default).")
@click.option("--eval-every", type=click.FloatRange(min=1), default=120.0, show_default=True, help="Seconds between val evaluations.")
@_executor_options
@_data_dir_option
def train(arch, corpus, budget, minutes, steps, out, seed, sizes, batch, seq_len, lr, dropout, weight_decay, device,
          precision, threads, eval_every, jobs, executor, address, retries, cell_timeout, data_dir):
    """Train a byte-LM on a corpus's train split and export its int8 artifact.

    \b
    compbench train --model gru --corpus enwik8 --budget 1MB --minutes 40 --out runs/gru-enwik8
    compbench run --coders "gru:model=runs/gru-enwik8" --corpus enwik8 --split test
    compbench train --model gru --corpus enwik8 --set hidden=128,256 --minutes 10 --jobs 2 --out runs/grid
    """
    from .models import ARCHS
    from .train import TrainConfig
    from .units import parse_size
    from .train import train as do_train

    if arch not in ARCHS:
        raise CompbenchError(f"unknown --model {arch!r}; architectures: {', '.join(ARCHS)}")
    if minutes is None and steps is None:
        raise CompbenchError("give --minutes N or --steps N")
    sets = _parse_sizes(sizes)
    tc = TrainConfig(model=arch, corpus=corpus, budget=parse_size(budget), out=out, minutes=minutes, steps=steps,
                     seed=seed, batch=batch or 0, seq_len=seq_len or 0, lr=lr or 0.0, dropout=dropout,
                     weight_decay=weight_decay, device=device,
                     precision=precision, threads=threads, size={k: v[0] for k, v in sets.items()}, eval_s=eval_every,
                     data_dir=str(data_dir) if data_dir else None)
    if any(len(v) > 1 for v in sets.values()) or jobs > 1 or executor != "local":
        from .runner import check_cores, make_executor
        from .train import train_grid

        check_cores(executor, jobs)  # training throughput is a reported figure too
        say = _say(False)
        train_grid(tc, sets, make_executor(executor, jobs, address, retries, cell_timeout, say), say=say)
        return
    do_train(tc, say=lambda msg, end="\n": click.echo(msg, err=True, nl=False) or click.echo(end, err=True, nl=False))


def main() -> None:
    cli(prog_name="compbench")
