"""The live dashboard: rendered from a recorded snapshot, and drawn by a real `streamsent run` in a terminal."""

from __future__ import annotations

import fcntl
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from rich.console import Console

from streamsent.runtime.dashboard import render, sparkline
from streamsent.runtime.metrics import LatestDoc, MetricsSnapshot
from streamsent.runtime.run import sample_file

from .helpers import require_backend

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.toml"

SNAPSHOT = MetricsSnapshot(  # what a recorder returned mid-run (values chosen to be told apart on screen)
    at=1_700_000_000.0, uptime_s=3723.0, model_name="imdb-han", model_version="1.0.0", device="cpu",
    labels=("negative", "positive"), max_docs=64, max_tokens=65_536, window_s=10.0,
    docs_per_s=1234.5, tokens_per_s=287_654.0, docs_per_s_history=(0.0, 500.0, 1000.0, 1234.5),
    latency_p50_s=0.0421, latency_p95_s=0.1873, latency_p99_s=0.3316, batch_docs_mean=48.3,
    batch_tokens_mean=11_204.0, batch_seconds_p50=0.0189, batches=9_876, tokens=4_567_890,
    docs={"scored": 98_765, "dead_lettered": 17}, dead_letters={"invalid_json": 12, "empty_text": 5},
    label_counts={"negative": 40_000, "positive": 58_765},
    lag={("reviews", 0): 0, ("reviews", 1): 321, ("reviews", 2): 4_096},
    latest=(LatestDoc("imdb-test-00042", "positive", 0.987, "…a superb, moving film with a wonderful cast",
                      ("superb", "wonderful", "moving")),
            LatestDoc("imdb-test-00007", "negative", 0.912, "Dull and far too long.", ("dull",))),
)


def _text(width: int = 120) -> str:
    console = Console(record=True, width=width, file=open(os.devnull, "w"), color_system="truecolor")  # noqa: SIM115
    console.print(render(SNAPSHOT))
    return console.export_text()


def _panel(screen: str, title: str) -> str:
    """The lines of screen text from a panel's title row down to the row where its box ends (same columns)."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        at = line.find(f" {title} ")
        if at >= 0:
            left = line.rfind("╭", 0, at)
            right = line.find("╮", at)
            body = []
            for row in lines[i + 1:]:
                body.append(row[left:right + 1])
                if row[left:left + 1] == "╰":
                    break
            return "\n".join(body)
    raise AssertionError(f"no panel titled {title!r} in\n{screen}")


def test_render_shows_every_figure_of_the_snapshot():
    screen = _text()
    assert "imdb-han 1.0.0" in screen and "up 1:02:03" in screen and "98,782 documents" in screen
    throughput = _panel(screen, "throughput")
    assert "1,234.5" in throughput and "287,654" in throughput and "98,765" in throughput
    assert sparkline(SNAPSHOT.docs_per_s_history, 30) == "▁▄▇█" and "▁▄▇█" in throughput
    latency = _panel(screen, "end-to-end latency")
    assert re.search(r"p50\s+42 ms", latency) and re.search(r"p95\s+187 ms", latency)
    assert re.search(r"p99\s+332 ms", latency) and re.search(r"batch p50\s+19 ms", latency)
    fill = _panel(screen, "batch fill")
    assert re.search(r"docs\s+48\.3 / 64\s+75%", fill) and re.search(r"tokens\s+11,204 / 65,536\s+17%", fill)
    assert "9,876" in fill
    lag = _panel(screen, "consumer lag")
    assert re.search(r"reviews\s+1\s+321", lag) and re.search(r"reviews\s+2\s+4,096", lag)
    assert "total 4,417" in screen
    labels = _panel(screen, "labels")
    assert re.search(r"negative\s+40,000\s+41%", labels) and re.search(r"positive\s+58,765\s+59%", labels)
    dead = _panel(screen, "dead letters")
    assert re.search(r"invalid_json\s+12", dead) and re.search(r"empty_text\s+5", dead) and "total 17" in screen
    latest = _panel(screen, "latest documents")
    assert re.search(r"positive\s+0\.987\s+imdb-test-00042\s+superb, wonderful, moving\s+…a superb", latest)
    assert re.search(r"negative\s+0\.912\s+imdb-test-00007\s+dull\s+Dull and far too long", latest)


def test_render_highlights_the_attended_words():
    console = Console(record=True, width=120, file=open(os.devnull, "w"), color_system="truecolor")  # noqa: SIM115
    console.print(render(SNAPSHOT))
    html = console.export_html(inline_styles=True)
    for word in ("superb", "wonderful", "moving", "Dull"):
        assert re.search(rf"background-color: #[0-9a-f]+[^>]*>{word}<", html), word
    assert not re.search(r"background-color: #[0-9a-f]+[^>]*>cast<", html)


def test_render_fits_a_narrow_terminal_and_an_empty_run():
    empty = MetricsSnapshot(at=0.0, uptime_s=1.0, model_name="m", model_version="0", device="cpu",
                            labels=("a", "b"), max_docs=8, max_tokens=100, window_s=10.0)
    for snap in (SNAPSHOT, empty):
        console = Console(record=True, width=80, file=open(os.devnull, "w"))  # noqa: SIM115
        console.print(render(snap))
        screen = console.export_text()
        assert all(len(line) <= 80 for line in screen.splitlines())
    assert "waiting for the first batch" in screen and "none" in _panel(screen, "dead letters")


def _read_screen(master: int, screen, stream, seconds: float, until=None) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                return False
            if not data:
                return False
            stream.feed(data)
        if until is not None and until("\n".join(screen.display)):
            return True
    return False


def test_streamsent_run_draws_live_figures_in_a_terminal(tmp_path):
    pyte = pytest.importorskip("pyte", reason="pip install pyte (test extra): reads the screen like a terminal")
    require_backend("tansu")
    cols, rows = 120, 50
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR", "TERM")}
    env |= {"TERM": "xterm-256color", "STREAMSENT__EMBEDDED__BROKER": "tansu"}
    proc = subprocess.Popen([sys.executable, "-m", "streamsent", "run", "--config", str(QUICKSTART)], cwd=tmp_path,
                            stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    screen = pyte.Screen(cols, rows)
    stream = pyte.ByteStream(screen)

    def live(text: str) -> bool:  # documents scored, their rate and latency shown, and the latest documents listed
        rate, p50 = re.search(r"docs/s\s+([\d,.]+)", text), re.search(r"p50\s+([\d,]+) ms", text)
        scored = re.search(r"scored\s+([\d,]+)", text)
        latest = re.search(r"(positive|negative)\s+0\.\d{3}\s+imdb-test-", text)
        lag = re.search(r"reviews\s+[0-2]\s+[\d,]+", text)  # a partition's row in the consumer lag panel
        return bool(rate and p50 and scored and latest and lag and float(rate.group(1).replace(",", "")) > 0
                    and int(scored.group(1).replace(",", "")) >= 20)

    try:
        assert _read_screen(master, screen, stream, 40, until=live), "\n".join(screen.display)
        text = "\n".join(screen.display)
        assert "streamsent  imdb-han" in text and "imdb-test-" in _panel(text, "latest documents")
        proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + 30
        while proc.poll() is None and time.monotonic() < deadline:
            _read_screen(master, screen, stream, 0.2)
        assert proc.wait(timeout=5) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)


def test_logs_are_json_lines_off_a_terminal(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(sample_file("imdb-sample").read_bytes().splitlines()[:5]) + b"\n{oops\n")
    cfg = tmp_path / "run.toml"
    cfg.write_text(f'[source]\ntype = "jsonl"\npath = "{src}"\n[[sink]]\ntype = "jsonl"\npath = "-"\n'
                   f'[dead_letter]\ntype = "jsonl"\npath = "{tmp_path / "dead.jsonl"}"\n'
                   '[metrics]\ndashboard = "auto"\n')
    out = subprocess.run([sys.executable, "-m", "streamsent", "run", "--config", str(cfg)], capture_output=True,
                         text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    logs = [json.loads(line) for line in out.stderr.splitlines()]  # every line is one JSON object
    assert logs and all({"time", "level", "logger", "message"} <= set(entry) for entry in logs)
    assert any("stopped after" in entry["message"] and "5 scored" in entry["message"] for entry in logs)
    scores = [json.loads(line) for line in out.stdout.splitlines()]  # no dashboard in the output: only scores
    assert len(scores) == 5 and "\x1b" not in out.stdout
