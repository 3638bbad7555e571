"""``compbench data fetch NAME``: download a standard corpus from its publisher, verify it, store it.

Every file written is checked against a SHA-256 published for it (see ``../shared/data/README.md``
provenance, or the publishers' own lists) before it lands, atomically, in the data folder under the
layout :mod:`compbench.corpus` reads. Offline, or on a checksum mismatch, nothing is written and the
error says what to do. Corpora that were derived locally (the Icelandic text, the TinyStories head)
have no public download to verify and say so.
"""

from __future__ import annotations

import hashlib
import io
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import FetchError
from .fsutil import atomic_write

CANTERBURY = "https://corpus.canterbury.ac.nz/resources/"


@dataclass(frozen=True)
class Source:
    """One download and the verified files it yields: dest path -> expected sha256.

    ``extract`` turns the downloaded bytes into ``{dest: bytes}``; the default stores them as is
    under the single destination."""

    url: str
    outputs: dict[str, str]
    sha256: str | None = None  # of the download itself, when the publisher's archive is pinned
    extract: Callable[[bytes], dict[str, bytes]] | None = field(default=None, compare=False)


def _tar_members(names: dict[str, str]) -> Callable[[bytes], dict[str, bytes]]:
    """Pick tar members by basename: {basename: dest}."""

    def extract(blob: bytes) -> dict[str, bytes]:
        out = {}
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
            for info in tar.getmembers():
                base = info.name.rsplit("/", 1)[-1]
                if info.isfile() and base in names and names[base] not in out:
                    out[names[base]] = tar.extractfile(info).read()
        return out

    return extract


def _zip_members(names: dict[str, str]) -> Callable[[bytes], dict[str, bytes]]:
    def extract(blob: bytes) -> dict[str, bytes]:
        out = {}
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            for info in zf.infolist():
                base = info.filename.rsplit("/", 1)[-1]
                if base in names:
                    out[names[base]] = zf.read(info)
        return out

    return extract


def _enwik8_head(blob: bytes) -> dict[str, bytes]:
    full = _zip_members({"enwik8": "full"})(blob).get("full", b"")
    if hashlib.sha256(full).hexdigest() != ENWIK8_FULL_SHA256:
        raise FetchError("enwik8.zip does not hold the published enwik8 (sha256 mismatch); nothing written")
    return {"enwik8/enwik8.head4154064": full[:4_154_064]}


ENWIK8_FULL_SHA256 = "2b49720ec4d78c3c9fabaee6e4179a5e997302b3a70029f30f2d582218c024a8"
_PTB = {
    "ptb.train.txt": "fcea919f6cf83f35d4d00c6cbf08040d13d4155226340912e2fef9c9c4102cbf",
    "ptb.valid.txt": "c9fe6985fe0d4ccb578183407d7668fc6066c20700cb4cf87d8ff1cc34df1bf2",
    "ptb.test.txt": "dd65dff31e70846b2a6030a87482edcd5d199130cdcfa1f3dccbb033728deee0",
    "ptb.char.train.txt": "e313d91425e06c4f0a8fb6e881dcce0c291f2a0e9f4dda54833069b122f91da9",
    "ptb.char.valid.txt": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    "ptb.char.test.txt": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
}
_SILESIA = {
    "dickens": "b24c37886142e11d0ee687db6ab06f936207aa7f2ea1fd1d9a36763c7a507e6a",
    "mr": "68637ed52e3e4860174ed2dc0840ac77d5f1a60abbcb13770d5754e3774d53e6",
    "nci": "fc63a31770947b8c2062d3b19ca94c00485a232bb91b502021948fee983e1635",
    "ooffice": "e7ee013880d34dd5208283d0d3d91b07f442e067454276095ded14f322a656eb",
    "osdb": "60f027179302ca3ad87c58ac90b6be72ec23588aaa7a3b7fe8ecc0f11def3fa3",
    "reymont": "0eac0114a3dfe6e2ee1f345a0f79d653cb26c3bc9f0ed79238af4933422b7578",
    "xml": "0e82e54e695c1938e4193448022543845b33020c8be6bf3bf3ead2224903e08c",
}
_WT2 = "https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/"

SOURCES: dict[str, list[Source]] = {
    "canterbury": [Source(CANTERBURY + "cantrbry.tar.gz",
                          {"canterbury/cantrbry.tar.gz": "f140e8a5b73d3f53198555a63bfb827889394a42f20825df33c810c3d5e3f8fb"})],
    "calgary": [Source(CANTERBURY + "calgary.tar.gz",
                       {"calgary/calgary.tar.gz": "e109eebdc19c5cee533c58bd6a49a4be3a77cc52f84ba234a089148a4f2093b7"})],
    "canterbury-large": [Source(
        CANTERBURY + "large.tar.gz",
        {"canterbury/large/bible.txt": "4e0a7e8dff7d9c82dbded57305c0ca3cdd3c4ca014db27121782fe9710f4723f",
         "canterbury/large/world192.txt": "1aebdc97d29904b25791da9aa32be90b69d7da6dc0ac9b95512ed27ed40d2112"},
        extract=_tar_members({"bible.txt": "canterbury/large/bible.txt", "world192.txt": "canterbury/large/world192.txt"}),
    )],
    "enwik8": [Source("http://mattmahoney.net/dc/enwik8.zip",
                      {"enwik8/enwik8.head4154064": "d8b3b95fb4993726ea7dcc93ae3c9e08a1a04cc540d05d7656fd267cc8ab5d6a"},
                      extract=_enwik8_head)],
    "tinyshakespeare": [Source(
        "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        {"tinyshakespeare/input.txt": "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"})],
    "ptb": [Source("http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz",
                   {f"ptb/{n}": h for n, h in _PTB.items()}, extract=_tar_members({n: f"ptb/{n}" for n in _PTB}))],
    "wikitext-2": [
        Source(_WT2 + "valid.txt", {"wikitext-2/wiki.valid.tokens": "f0737ed31fc1329026e95cb8b98e19c2a182c39c240ab909dc31abf2f8af58e8"}),
        Source(_WT2 + "test.txt", {"wikitext-2/wiki.test.tokens": "d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0"}),
    ],
    "silesia": [Source("http://sun.aei.polsl.pl/~sdeor/corpus/silesia.zip",
                       {f"silesia/{n}": h for n, h in _SILESIA.items()},
                       extract=_zip_members({n: f"silesia/{n}" for n in _SILESIA}))],
}
SOURCES["ptb-char"] = SOURCES["ptb"]


def download(url: str, timeout: float = 60.0, progress=sys.stderr) -> bytes:
    """GET a URL into memory with a progress line on stderr; clear errors when offline."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            buf, last = bytearray(), 0.0
            while True:
                block = resp.read(1 << 20)
                if not block:
                    break
                buf += block
                if progress and time.monotonic() - last > 1.0:
                    last = time.monotonic()
                    pct = f" ({100 * len(buf) / total:.0f}%)" if total else ""
                    print(f"  {url}: {len(buf) / 1e6:.1f} MB{pct}", file=progress)
            return bytes(buf)
    except urllib.error.HTTPError as err:
        raise FetchError(f"download of {url} failed: HTTP {err.code} {err.reason}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise FetchError(
            f"cannot download {url} ({reason}). Are you offline? Copy the corpus files into the data folder "
            "by hand, or point COMPBENCH_DATA at a folder that has them."
        ) from None


def fetch(name: str, data_dir: Path, sources: dict[str, list[Source]] | None = None, progress=sys.stderr) -> list[Path]:
    """Download, verify and store corpus ``name``; returns the files written."""
    from .corpus import CORPORA, resolve_name

    sources = SOURCES if sources is None else sources
    key = resolve_name(name)
    if key not in sources:
        if key in CORPORA:
            raise FetchError(
                f"corpus {key!r} has no public download compbench can verify; copy its files into {data_dir} "
                "(see ../shared/data/README.md for provenance)"
            )
        raise FetchError(f"unknown corpus {name!r}; fetchable: {', '.join(sorted(sources))}")
    verified: dict[str, bytes] = {}
    for src in sources[key]:
        blob = download(src.url, progress=progress)
        if src.sha256 and hashlib.sha256(blob).hexdigest() != src.sha256:
            raise FetchError(f"checksum mismatch for {src.url}: the download is not the published file; nothing written")
        try:
            files = src.extract(blob) if src.extract else {next(iter(src.outputs)): blob}
        except FetchError:
            raise
        except Exception as err:
            raise FetchError(f"cannot unpack {src.url}: {err}; nothing written") from None
        for dest, expected in src.outputs.items():
            data = files.get(dest)
            if data is None:
                raise FetchError(f"{src.url} does not contain {Path(dest).name}; nothing written")
            got = hashlib.sha256(data).hexdigest()
            if got != expected:
                raise FetchError(f"checksum mismatch for {dest}: expected sha256 {expected}, got {got}; nothing written")
            verified[dest] = data
    written = []
    for dest, data in verified.items():
        path = Path(data_dir) / dest
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, data)
        except OSError as err:
            raise FetchError(f"cannot write {path}: {err.strerror}") from None
        written.append(path)
    return written
