"""The live terminal dashboard of `streamsent run`: a rich `Live` view of `MetricsSnapshot`s.

`render(snapshot)` is a pure function (a snapshot in, a rich renderable out), so it is tested by printing to a
recording Console. `Dashboard` runs it on a thread of its own at most `refresh_hz` times a second: the pipeline's
threads only feed the recorder, and never wait for the terminal.
"""

from __future__ import annotations

import re
import threading

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .metrics import LatestDoc, Metrics, MetricsSnapshot

__all__ = ["Dashboard", "render", "sparkline"]

_BLOCKS = "▁▂▃▄▅▆▇█"
_LABEL_STYLES = {"positive": "green", "negative": "red", "neutral": "yellow"}
_PALETTE = ("cyan", "magenta", "blue", "yellow")


def sparkline(values: tuple[float, ...] | list[float], width: int) -> str:
    """The last `width` values as block characters, scaled to the largest of them."""
    values = list(values)[-width:]
    top = max(values, default=0.0)
    if top <= 0:
        return _BLOCKS[0] * len(values)
    return "".join(_BLOCKS[min(int(v / top * (len(_BLOCKS) - 1) + 0.5), len(_BLOCKS) - 1)] for v in values)


def _bar(fraction: float, width: int) -> str:
    cells = max(0.0, min(fraction, 1.0)) * width
    return "█" * int(cells) + ("▌" if cells - int(cells) >= 0.5 else "")


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    return f"{seconds * 1000:,.0f} ms" if seconds < 10 else f"{seconds:,.1f} s"


def _duration(seconds: float) -> str:
    s = int(seconds)
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _label_style(label: str, labels: tuple[str, ...]) -> str:
    if label in _LABEL_STYLES:
        return _LABEL_STYLES[label]
    return _PALETTE[labels.index(label) % len(_PALETTE)] if label in labels else "white"


def _kv(rows: list[tuple[str, str | Text]]) -> Table:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    for k, v in rows:
        t.add_row(k, v)
    return t


def _throughput(s: MetricsSnapshot) -> Panel:
    body = _kv([("docs/s", Text(f"{s.docs_per_s:,.1f}", style="bold")),
                ("tokens/s", f"{s.tokens_per_s:,.0f}"),
                ("scored", f"{s.docs.get('scored', 0):,}"),
                ("tokens", f"{s.tokens:,}")])
    spark = Text(sparkline(s.docs_per_s_history, 30) or " ", style="cyan")
    return Panel(Group(body, spark), title="throughput", subtitle=f"docs/s, {len(s.docs_per_s_history[-30:])} s",
                 box=box.ROUNDED)


def _latency(s: MetricsSnapshot) -> Panel:
    body = _kv([("p50", Text(_ms(s.latency_p50_s), style="bold")), ("p95", _ms(s.latency_p95_s)),
                ("p99", _ms(s.latency_p99_s)), ("batch p50", _ms(s.batch_seconds_p50))])
    return Panel(body, title="end-to-end latency", subtitle=f"last {s.window_s:g} s", box=box.ROUNDED)


def _batches(s: MetricsSnapshot) -> Panel:
    t = Table.grid(padding=(0, 1))
    t.add_column(style="dim")
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True, style="cyan", width=6)
    for name, mean, limit in (("docs", s.batch_docs_mean, s.max_docs), ("tokens", s.batch_tokens_mean, s.max_tokens)):
        t.add_row(name, f"{mean:,.1f}" if name == "docs" else f"{mean:,.0f}", f"/ {limit:,}", f"{mean / limit:.0%}",
                  _bar(mean / limit, 6))
    t.add_row("batches", f"{s.batches:,}", "", "", "")
    return Panel(t, title="batch fill", subtitle="mean per batch / limit", box=box.ROUNDED)


def _lag(s: MetricsSnapshot) -> Panel:
    if not s.lag:
        return Panel(Text("no partitions assigned (yet)", style="dim"), title="consumer lag", box=box.ROUNDED)
    t = Table(box=None, padding=(0, 1), show_edge=False)
    t.add_column("topic", style="dim", no_wrap=True, overflow="ellipsis", max_width=24)
    t.add_column("part", justify="right")
    t.add_column("lag", justify="right")
    shown = sorted(s.lag.items())[:6]
    for (topic, partition), n in shown:
        t.add_row(topic, str(partition), Text(f"{n:,}", style="bold yellow" if n else "green"))
    if len(s.lag) > len(shown):
        t.add_row("…", "", "")
    return Panel(t, title="consumer lag", subtitle=f"total {sum(s.lag.values()):,}", box=box.ROUNDED)


def _labels(s: MetricsSnapshot) -> Panel:
    total = sum(s.label_counts.values())
    t = Table.grid(padding=(0, 1))
    t.add_column(no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(justify="right", no_wrap=True)
    t.add_column(no_wrap=True, width=10)
    for label in s.labels:
        n = s.label_counts.get(label, 0)
        share = n / total if total else 0.0
        style = _label_style(label, s.labels)
        t.add_row(Text(label, style=style), f"{n:,}", f"{share:.0%}", Text(_bar(share, 10), style=style))
    return Panel(t, title="labels", box=box.ROUNDED)


def _dead_letters(s: MetricsSnapshot) -> Panel:
    total = s.docs.get("dead_lettered", 0)
    if not s.dead_letters:
        body: RenderableType = Text("none", style="green")
    else:
        body = _kv([(reason, Text(f"{n:,}", style="bold red")) for reason, n in
                    sorted(s.dead_letters.items(), key=lambda kv: -kv[1])[:6]])
    return Panel(body, title="dead letters", subtitle=f"total {total:,}", box=box.ROUNDED)


def _highlighted(doc: LatestDoc) -> Text:
    text = Text(doc.text)
    for word in doc.words:
        text.highlight_regex(rf"(?i)(?<!\w){re.escape(word)}(?!\w)", "bold black on yellow")
    return text


def _latest(s: MetricsSnapshot) -> Panel:
    t = Table(box=None, padding=(0, 1), expand=True, show_edge=False)
    t.add_column("label", no_wrap=True)
    t.add_column("score", justify="right", no_wrap=True)
    t.add_column("doc_id", no_wrap=True, style="dim", max_width=18, overflow="ellipsis")
    t.add_column("most attended", no_wrap=True, max_width=28, overflow="ellipsis", style="yellow")
    t.add_column("text", no_wrap=True, overflow="ellipsis", ratio=1)
    for doc in s.latest:
        t.add_row(Text(doc.label, style=_label_style(doc.label, s.labels)), f"{doc.score:.3f}", doc.doc_id,
                  ", ".join(doc.words), _highlighted(doc))
    body: RenderableType = t if s.latest else Text("waiting for the first batch…", style="dim")
    return Panel(body, title="latest documents", box=box.ROUNDED)


def _row(*panels: Panel) -> Table:
    grid = Table.grid(expand=True, padding=(0, 1))
    for _ in panels:
        grid.add_column(ratio=1)
    grid.add_row(*panels)
    return grid


def render(s: MetricsSnapshot) -> RenderableType:
    """The whole dashboard for one snapshot."""
    header = Text.assemble(("streamsent", "bold cyan"), "  ", (f"{s.model_name} {s.model_version}", "bold"),
                           f" on {s.device}", "   up ", _duration(s.uptime_s), "   ",
                           (f"{s.docs_total:,}", "bold"), " documents")
    if s.write_error is not None:  # an outage: say so above everything else, it holds the commits back
        header.append(Text.assemble("\n", ("sinks failing", "bold white on red"),
                                    f" ({s.write_retries:,} retries; nothing committed until they recover): ",
                                    (s.write_error[:200], "red")))
    return Group(header, _row(_throughput(s), _latency(s), _batches(s)),
                 _row(_lag(s), _labels(s), _dead_letters(s)), _latest(s))


class Dashboard:
    """Shows `metrics` live on `console` (a terminal) until stopped; the last frame stays on screen."""

    def __init__(self, metrics: Metrics, console: Console | None = None, refresh_hz: float = 4.0) -> None:
        self.metrics = metrics
        self.period_s = 1.0 / min(refresh_hz, 4.0)  # the terminal is for people: 4 Hz is plenty
        self.live = Live(render(metrics.snapshot()), console=console, auto_refresh=False, transient=False,
                         redirect_stdout=True, redirect_stderr=True, vertical_overflow="crop")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="streamsent-dashboard", daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(self.period_s):
            self.live.update(render(self.metrics.snapshot()), refresh=True)

    def start(self) -> Dashboard:
        self.live.start(refresh=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.live.update(render(self.metrics.snapshot()), refresh=True)  # the final figures stay on screen
        self.live.stop()

    def __enter__(self) -> Dashboard:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
