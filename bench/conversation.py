"""Per-message cost as a conversation grows: incremental (KeyedScorer, carried state) vs re-scoring the whole
conversation for every new message.

    python bench/conversation.py [--repeats 5] [--keys 1 16] [--at 1 10 100 1000]

For each model and each number of concurrent conversations B (one micro-batch holds one new message of each),
the conversations are played through message 1 .. max(--at), every batch timed; the table shows, at message n,
the median over repeats of the time per message. Incremental: `KeyedScorer.score` on the batch of new messages
(Doc in -> scored Arrow rows out, state gathered and scattered: everything the pipeline would call). Re-score:
`Model.predict_batch` on the B whole conversations so far, with their DocBatch built beforehand (not timed, which
favours re-scoring). "Model call only": the incremental `Model.predict_batch` on the new messages with the
carried state, without the store and the Arrow rows (the stateless pipeline builds the same rows). At message n
both give the same running score (checked, <= 1e-5).
Window mode (the default HAN's shape: a bidirectional document encoder; `[state] window` = 64 sentence vectors per
key): "model call only" is the word level on the new message plus the document level over the key's window, and
the running score is checked against the last 64 sentences scored as one document (beyond 32 messages it is no
longer the whole conversation's, which "re-score whole" still scores).
Messages are 2 sentences of 10 tokens. Random weights: speed does not depend on what the weights are.

    python bench/conversation.py --models window   # only the models whose name holds "window"
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from streamsent import DocBatch, Model, ModelConfig
from streamsent.models.init import random_weights
from streamsent.runtime.records import Doc, Record
from streamsent.runtime.state import KeyedScorer

VOCAB, DIM = 20_000, 50
MODELS = {
    "paragraph bi-GRU 64, max": ({"type": "gru", "hidden": 64, "bidirectional": True, "pooling": "max"},
                                  {"type": "paragraph"}),
    "hier GRU+att / GRU+att": (
        {"type": "gru", "hidden": 50, "bidirectional": True, "pooling": "attention", "attention_dim": 100},
        {"type": "hierarchical", "encoder": {"type": "gru", "hidden": 50, "pooling": "attention",
                                             "attention_dim": 100}}),
    "HAN (bi GRU+att / bi GRU+att), window 64": (
        {"type": "gru", "hidden": 50, "bidirectional": True, "pooling": "attention", "attention_dim": 100},
        {"type": "hierarchical", "encoder": {"type": "gru", "hidden": 50, "bidirectional": True,
                                             "pooling": "attention", "attention_dim": 100}}),
}
WINDOW = 64  # [state] window for models that cannot carry state


def _model(word: dict, comp: dict) -> Model:
    cfg = ModelConfig.from_dict({"format": "streamsent-model/1", "name": "bench", "version": "0",
                                 "labels": ["negative", "positive"], "embedding": {"vocab_size": VOCAB, "dim": DIM},
                                 "word_encoder": word, "composition": comp})
    return Model(cfg, random_weights(cfg, seed=0, scale=0.2))


def _run(model: Model, keys: int, at: list[int], rng: np.random.Generator) -> list[dict[int, float]]:
    """One pass: seconds per message at each n in `at`: incremental (all of it, model call only), re-scored."""
    last = max(at)
    msgs = rng.integers(1, VOCAB, size=(keys, last, 2, 10)).tolist()  # (B, messages, sentences, tokens)
    scorer = KeyedScorer(model, max_keys=max(keys, 1), ttl_s=0, window=WINDOW)
    windowed = scorer.layout.window > 0
    inc, call, full = {}, {}, {}
    for n in range(1, last + 1):
        docs = [Doc(f"c{k}-{n}", f"c{k}", None, msgs[k][n - 1], {}, Record(None, topic="chats", partition=0,
                                                                         offset=n * keys + k)) for k in range(keys)]
        if n in at:
            before, _ = scorer.store.gather(scorer.store.lookup([d.key for d in docs])[0])
        t = time.perf_counter()
        out = scorer.score(docs)
        dt = time.perf_counter() - t
        if n in at:
            inc[n] = dt / keys
            new = DocBatch.from_lists([d.tokens for d in docs])
            t = time.perf_counter()
            if windowed:
                scorer._predict_window(new, before)
            else:
                model.predict_batch(new, before)
            call[n] = (time.perf_counter() - t) / keys
            batch = DocBatch.from_lists([[s for m in msgs[k][:n] for s in m] for k in range(keys)])
            t = time.perf_counter()
            whole, _ = model.predict_batch(batch)
            full[n] = (time.perf_counter() - t) / keys
            got = np.array(out.rows.column("probs").to_pylist())
            if windowed:  # the window: the last WINDOW sentences as one document
                whole, _ = model.predict_batch(DocBatch.from_lists(
                    [[s for m in msgs[k][:n] for s in m][-WINDOW:] for k in range(keys)]))
            assert np.abs(got - whole.probs).max() <= 1e-5, (n, np.abs(got - whole.probs).max())
    return [inc, call, full]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--keys", type=int, nargs="+", default=[1, 16], help="concurrent conversations per batch")
    ap.add_argument("--at", type=int, nargs="+", default=[1, 10, 100, 1000], help="message numbers to report")
    ap.add_argument("--models", default="", help="only the models whose name holds this")
    args = ap.parse_args()
    print(f"messages of 2 x 10 tokens; vocabulary {VOCAB:,}, embedding {DIM}; median of {args.repeats} repeats; "
          "ms per message")
    print()
    print("| model | conversations per batch | message n | incremental | incremental, model call only "
          "| re-score whole (model call) | re-score / incremental |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, (word, comp) in MODELS.items():
        if args.models not in name:
            continue
        model = _model(word, comp)
        _run(model, 1, [1, 2], np.random.default_rng(0))  # compile / warm up
        for keys in args.keys:
            runs = [_run(model, keys, sorted(args.at), np.random.default_rng(r)) for r in range(args.repeats)]
            for n in sorted(args.at):
                inc, call, full = (statistics.median(r[i][n] for r in runs) * 1e3 for i in range(3))
                print(f"| {name} | {keys} | {n:,} | {inc:.3f} | {call:.3f} | {full:.3f} | {full / inc:,.1f}x |",
                      flush=True)


if __name__ == "__main__":
    main()
