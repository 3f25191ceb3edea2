"""Plain-NumPy backend: slow, float64, one document at a time, written to be obviously right.

It is the oracle the Numba kernels are tested against (together with `torch.nn`). It follows
docs/model-format.md line by line and shares no code with the fast path; it does not carry state.
"""

from __future__ import annotations

import numpy as np

from ..batch import DocBatch
from ..errors import StateError
from ..models.config import EncoderConfig, ModelConfig
from .base import CarryState, Scores, check_sentence_level

__all__ = ["ReferenceBackend"]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max())
    return e / e.sum()


class ReferenceBackend:
    def __init__(self, config: ModelConfig, weights: dict[str, np.ndarray]) -> None:
        self.config = config
        self.w = {k: v.astype(np.float64) for k, v in weights.items()}

    # -- recurrent cells, exactly as torch.nn documents them -------------------------------------------------
    def _cell(self, kind: str, p: str, sfx: str, x: np.ndarray, h: np.ndarray,
              c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        w = self.w
        gi = w[f"{p}.weight_ih_l0{sfx}"] @ x + w[f"{p}.bias_ih_l0{sfx}"]
        gh = w[f"{p}.weight_hh_l0{sfx}"] @ h + w[f"{p}.bias_hh_l0{sfx}"]
        if kind == "rnn":
            return np.tanh(gi + gh), c
        if kind == "gru":
            H = len(h)
            r = _sigmoid(gi[:H] + gh[:H])
            z = _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
            n = np.tanh(gi[2 * H :] + r * gh[2 * H :])
            return (1.0 - z) * n + z * h, c
        H = len(h)  # lstm: i, f, g, o
        i, f = _sigmoid(gi[:H] + gh[:H]), _sigmoid(gi[H : 2 * H] + gh[H : 2 * H])
        g, o = np.tanh(gi[2 * H : 3 * H] + gh[2 * H : 3 * H]), _sigmoid(gi[3 * H :] + gh[3 * H :])
        c = f * c + i * g
        return o * np.tanh(c), c

    def _run(self, enc: EncoderConfig, p: str, xs: np.ndarray, reverse: bool,
             h0: np.ndarray | None = None, c0: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One direction over xs [n, E] -> outputs [n, H], final h, final c."""
        H = enc.hidden
        h = np.zeros(H) if h0 is None else h0
        c = np.zeros(H) if c0 is None else c0
        outs = np.zeros((len(xs), H))
        steps = range(len(xs) - 1, -1, -1) if reverse else range(len(xs))
        for t in steps:
            h, c = self._cell(enc.type, p, "_reverse" if reverse else "", xs[t], h, c)
            outs[t] = h
        return outs, h, c

    def _encode(self, enc: EncoderConfig, p: str, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A whole sequence from zero state -> (outputs [n, D], `last` vector [D])."""
        if enc.type == "mean":
            return xs, np.zeros(xs.shape[1])
        if enc.type == "cnn":
            return self._cnn(enc, p, xs), np.zeros(0)
        fo, fh, _ = self._run(enc, f"{p}.rnn", xs, reverse=False)
        if not enc.bidirectional:
            return fo, fh
        bo, bh, _ = self._run(enc, f"{p}.rnn", xs, reverse=True)
        return np.concatenate([fo, bo], axis=1), np.concatenate([fh, bh])

    def _cnn(self, enc: EncoderConfig, p: str, xs: np.ndarray) -> np.ndarray:
        """Kim CNN; returns the pooled vector as a single 'output' row (pooling is part of the encoder)."""
        feats = []
        for i, w in enumerate(enc.widths):
            W, b = self.w[f"{p}.convs.{i}.weight"], self.w[f"{p}.convs.{i}.bias"]  # [M, E, w], [M]
            x = xs if len(xs) >= w else np.concatenate([xs, np.zeros((w - len(xs), xs.shape[1]))])
            conv = np.array([(W * x[t : t + w].T[None]).sum(axis=(1, 2)) + b for t in range(len(x) - w + 1)])
            feats.append(np.maximum(conv, 0.0).max(axis=0))
        return np.concatenate(feats)[None]

    def _pool(self, enc: EncoderConfig, p: str, outs: np.ndarray,
              last: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """A non-empty sequence's outputs [n, D] -> (pooled vector, attention weights or None)."""
        if enc.type == "cnn":
            return outs[0], None
        if enc.pooling == "last":
            return last, None
        if enc.pooling == "mean":
            return outs.mean(axis=0), None
        if enc.pooling == "max":
            return outs.max(axis=0), None
        u = np.tanh(outs @ self.w[f"{p}.attention.proj.weight"].T + self.w[f"{p}.attention.proj.bias"])
        a = _softmax(u @ self.w[f"{p}.attention.context"])
        return a @ outs, a

    def _sentence_vector(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        enc = self.config.word_encoder
        outs, last = self._encode(enc, "word_encoder", xs)
        return self._pool(enc, "word_encoder", outs, last)

    # -- one document -------------------------------------------------------------------------------------------
    def _document(self, sents: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray | None], np.ndarray | None]:
        """sents: token-id arrays. -> (doc vector, per-sentence word attention, sentence attention)."""
        cfg, E = self.config, self.w["embedding.weight"]
        enc, comp = cfg.word_encoder, cfg.composition
        nonempty = [i for i, s in enumerate(sents) if len(s)]
        watt: list[np.ndarray | None] = [None] * len(sents)
        if comp in ("flat", "paragraph"):
            ids = np.concatenate([sents[i] for i in nonempty]) if nonempty else np.zeros(0, np.int64)
            xs = E[ids]
            if comp == "paragraph" and enc.bidirectional:
                fo, fh, _ = self._run(enc, "word_encoder.rnn", xs, reverse=False)
                bos, bh = [], np.zeros(enc.hidden)
                for i in nonempty:
                    bo, bh, _ = self._run(enc, "word_encoder.rnn", E[sents[i]], reverse=True)
                    bos.append(bo)
                bo = np.concatenate(bos) if bos else np.zeros((0, enc.hidden))
                outs, last = np.concatenate([fo, bo], axis=1), np.concatenate([fh, bh])
            else:
                outs, last = self._encode(enc, "word_encoder", xs)
            if len(ids) == 0:
                return np.zeros(cfg.word_dim), watt, None
            vec, a = self._pool(enc, "word_encoder", outs, last)
            if a is not None:  # split the document's weights back into its sentences
                pos = 0
                for i, s in enumerate(sents):
                    watt[i] = a[pos : pos + len(s)]
                    pos += len(s)
            return vec, watt, None
        vecs = []
        for i in nonempty:
            v, a = self._sentence_vector(E[sents[i]])
            vecs.append(v)
            watt[i] = a
        if comp == "average":
            return (np.mean(vecs, axis=0) if vecs else np.zeros(cfg.word_dim)), watt, None
        denc = cfg.doc_encoder
        assert denc is not None
        satt = np.zeros(len(sents))
        if not vecs:
            return np.zeros(cfg.doc_dim), watt, satt
        outs, last = self._encode(denc, "composition", np.array(vecs))
        vec, a = self._pool(denc, "composition", outs, last)
        if a is not None:
            satt[nonempty] = a
        return vec, watt, (satt if a is not None else None)

    def forward(self, batch: DocBatch, state: CarryState | None = None) -> tuple[Scores, None]:
        if state is not None:
            raise StateError("the reference backend scores whole documents only; use the cpu backend to carry state")
        cfg = self.config
        batch.check_vocab(cfg.vocab_size)
        so, do, ids = batch.sent_offsets, batch.doc_offsets, batch.token_ids
        probs = np.zeros((batch.n_docs, len(cfg.labels)))
        want_w = cfg.word_encoder.pooling == "attention"
        want_s = cfg.doc_encoder is not None and cfg.doc_encoder.pooling == "attention"
        watt = np.zeros(batch.n_tokens) if want_w else None
        satt = np.zeros(batch.n_sentences) if want_s else None
        for d in range(batch.n_docs):
            sents = [ids[so[s] : so[s + 1]].astype(np.int64) for s in range(do[d], do[d + 1])]
            vec, wa, sa = self._document(sents)
            probs[d] = _softmax(self.w["head.weight"] @ vec + self.w["head.bias"])
            for k, s in enumerate(range(do[d], do[d + 1])):
                if watt is not None and wa[k] is not None:
                    watt[so[s] : so[s + 1]] = wa[k]
            if satt is not None and sa is not None:
                satt[do[d] : do[d + 1]] = sa
        return Scores(probs.astype(np.float32), _f32(watt), _f32(satt)), None


    # -- the two halves of a sentence-level model (as CpuBackend: sentence_vectors, score_sentences) ----------------
    def sentence_vectors(self, batch: DocBatch) -> np.ndarray:
        """float64[S, P]: the pooled word-encoder vector of each non-empty sentence, in batch order."""
        check_sentence_level(self.config)
        batch.check_vocab(self.config.vocab_size)
        E, so = self.w["embedding.weight"], batch.sent_offsets
        vecs = [self._sentence_vector(E[batch.token_ids[so[s] : so[s + 1]].astype(np.int64)])[0]
                for s in range(batch.n_sentences) if so[s + 1] > so[s]]
        return np.array(vecs).reshape(len(vecs), self.config.word_dim)

    def score_sentences(self, vectors: np.ndarray, doc_offsets: np.ndarray) -> Scores:
        """Documents as their sentence vectors [S, P] (document d = rows doc_offsets[d] .. doc_offsets[d+1]) ->
        Scores (probs; sentence attention per row of `vectors` with attention pooling; no word attention)."""
        check_sentence_level(self.config)
        cfg, denc = self.config, self.config.doc_encoder
        vectors = np.asarray(vectors, np.float64).reshape(-1, cfg.word_dim)
        do = np.asarray(doc_offsets, np.int64)
        probs = np.zeros((len(do) - 1, len(cfg.labels)))
        satt = np.zeros(len(vectors)) if denc is not None and denc.pooling == "attention" else None
        for d in range(len(do) - 1):
            vecs = vectors[do[d] : do[d + 1]]
            if cfg.composition == "average":
                vec = vecs.mean(axis=0) if len(vecs) else np.zeros(cfg.word_dim)
            elif len(vecs) == 0:
                vec = np.zeros(cfg.doc_dim)
            else:
                assert denc is not None
                outs, last = self._encode(denc, "composition", vecs)
                vec, a = self._pool(denc, "composition", outs, last)
                if satt is not None and a is not None:
                    satt[do[d] : do[d + 1]] = a
            probs[d] = _softmax(self.w["head.weight"] @ vec + self.w["head.bias"])
        return Scores(probs.astype(np.float32), None, _f32(satt))


def _f32(a: np.ndarray | None) -> np.ndarray | None:
    return None if a is None else a.astype(np.float32)
