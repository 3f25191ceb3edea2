"""`streamsent eval --plots DIR`: the rich table on the terminal and two real PNG files."""

from __future__ import annotations

import struct

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from streamsent.cli import main

pytest.importorskip("matplotlib", reason="pip install 'streamsent[plots]'")

POS = ["A wonderful, moving film with a superb cast.", "I loved every minute; brilliant and funny.",
       "One of the best films of the year, beautifully made.", "Great story, great acting, a joy to watch."]
NEG = ["Dull and far too long.", "An awful mess with a boring plot and terrible acting.",
       "The worst film I have seen in years; a waste of time.", "Badly written, badly acted, I hated it."]


def _png_size(path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR", f"{path} is not a PNG"
    assert data[-12:] == b"\x00\x00\x00\x00IEND\xaeB`\x82", f"{path} is cut short"
    return struct.unpack(">II", data[16:24])


def test_eval_writes_confusion_and_score_plots(tmp_path, capsys):
    texts, labels = POS * 3 + NEG * 3, ["positive"] * 12 + ["negative"] * 12
    data = tmp_path / "labelled.parquet"
    pq.write_table(pa.table({"doc_id": [str(i) for i in range(24)], "text": texts, "label": labels}), data)
    out = tmp_path / "plots"
    assert main(["eval", "--data", str(data), "--no-torch", "--plots", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "macro-F1" in printed and "confusion" in printed
    for name in ("confusion.png", "scores.png"):
        assert f"wrote {out / name}" in printed.replace("\n", "")
        width, height = _png_size(out / name)
        assert 300 <= width <= 2000 and 300 <= height <= 2000
        assert (out / name).stat().st_size > 10_000  # a drawn figure, not an empty canvas
