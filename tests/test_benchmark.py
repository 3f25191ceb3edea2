"""`streamsent bench` / streamsent.benchmark: the table's columns and rows (correctness only, no timings)."""

from __future__ import annotations

import importlib.util

import pytest

from streamsent import Model, ModelConfig, benchmark
from streamsent.cli import main
from streamsent.models.init import random_weights

HAS_TORCH = importlib.util.find_spec("torch") is not None


def _tiny(composition: dict) -> Model:
    cfg = ModelConfig.from_dict({
        "format": "streamsent-model/1", "name": "tiny", "labels": ["neg", "pos"],
        "embedding": {"vocab_size": 50, "dim": 6, "padding_idx": 0},
        "word_encoder": {"type": "gru", "hidden": 4, "bidirectional": True, "pooling": "attention",
                         "attention_dim": 3},
        "composition": composition,
    })
    return Model(cfg, random_weights(cfg, seed=3))


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


@pytest.mark.parametrize("use_torch", [False, pytest.param(True, marks=pytest.mark.skipif(not HAS_TORCH,
                                                                                          reason="no torch"))])
def test_table_rows_and_columns(use_torch: bool) -> None:
    model = _tiny({"type": "hierarchical", "encoder": {"type": "gru", "hidden": 3}})
    lines = benchmark.run({"tiny": model}, [1, 2], repeats=1, n_docs=4, n_sent=2, n_tok=3, use_torch=use_torch,
                          with_breakdown=True, gemm_size=64)
    assert lines[0].startswith("float32 GEMM ceiling:")
    tables = [i for i, line in enumerate(lines) if line.startswith("| model")]
    assert len(tables) == 2
    head = _cells(lines[tables[0]])
    torch_cols = ["torch docs/s", "ratio", "torch % of ceiling"]
    assert all((c in head) == use_torch for c in torch_cols)
    assert head[:3] == ["model", "batch", "streamsent docs/s"] and head[-1] == "ceiling GFLOP/s"
    rows = [_cells(line) for line in lines[tables[0] + 2 : tables[0] + 4]]
    assert [r[:2] for r in rows] == [["tiny", "1"], ["tiny", "2"]]
    assert all(len(r) == len(head) for r in rows)
    assert all(float(r[2].replace(",", "")) > 0 for r in rows)
    stages = _cells(lines[tables[1]])
    assert stages[:3] == ["model", "batch", "µs/doc"] and "recurrent" in stages and "attention" in stages
    shares = [_cells(line) for line in lines[tables[1] + 2 :]]
    assert [r[:2] for r in shares] == [["tiny", "1"], ["tiny", "2"]]
    for r in shares:  # the timed stages add up to 100 %; the parts measured beside the pass lie within it
        pct = {k: float(v.rstrip("%")) for k, v in zip(stages, r, strict=True) if v.endswith("%")}
        assert sum(pct[s] for s in benchmark.STAGES) == pytest.approx(100, abs=1)
        assert 0 <= pct["gather"] <= 100 and 0 <= pct["attention GEMM"] <= pct["attention"]


def test_flops_count_what_tables_remove() -> None:
    cfg = _tiny({"type": "flat"}).config
    # bi-GRU 3·4 gates, 6 inputs + 4 hidden, 2 directions, 6 tokens; attention 8 -> 3; head 8 -> 2
    rec = 6 * 2 * 2 * 12 * (6 + 4)
    att = 6 * (2 * 8 * 3 + 2 * 3)
    assert benchmark.flops_per_doc(cfg, 2, 3) == rec + att + 2 * 8 * 2
    assert benchmark.flops_per_doc(cfg, 2, 3, tables=True) == 6 * 2 * 2 * 12 * 4 + att + 2 * 8 * 2


def test_cli_bench_on_a_model_directory(tmp_path, capsys) -> None:
    path = _tiny({"type": "flat"}).save(tmp_path / "tiny")
    assert main(["bench", "--model", str(path), "--batches", "1", "--docs", "2", "--sentences", "1",
                 "--tokens", "4", "--repeats", "1", "--no-torch"]) == 0
    out = capsys.readouterr().out.splitlines()
    rows = [line for line in out if line.startswith("| tiny")]
    assert len(rows) == 1 and _cells(rows[0])[:2] == ["tiny", "1"]
    assert "torch docs/s" not in _cells(out[2])
