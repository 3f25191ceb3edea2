"""The model directory: one built by hand from torch.nn modules loads and scores like torch; errors name
the key or tensor with the expected and actual values."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as torch_save_file

import streamsent
from streamsent import BatchError, DeviceError, Model, ModelFormatError
from streamsent.models.init import random_weights

from ..helpers import TOL, make_config


class HandBuiltHAN(torch.nn.Module):
    """A HAN written here from torch.nn only (not streamsent's modules), as a user would."""

    def __init__(self, V=50, E=8, H=6, A=5, Hd=4, Ad=3, C=2):
        super().__init__()
        self.embedding = torch.nn.Embedding(V, E, padding_idx=0)
        self.word_encoder = torch.nn.Module()
        self.word_encoder.rnn = torch.nn.GRU(E, H, batch_first=True, bidirectional=True)
        self.word_encoder.attention = torch.nn.Module()
        self.word_encoder.attention.proj = torch.nn.Linear(2 * H, A)
        self.word_encoder.attention.context = torch.nn.Parameter(torch.randn(A))
        self.composition = torch.nn.Module()
        self.composition.rnn = torch.nn.GRU(2 * H, Hd, batch_first=True, bidirectional=True)
        self.composition.attention = torch.nn.Module()
        self.composition.attention.proj = torch.nn.Linear(2 * Hd, Ad)
        self.composition.attention.context = torch.nn.Parameter(torch.randn(Ad))
        self.head = torch.nn.Linear(2 * Hd, C)

    @staticmethod
    def _attend(att, h):  # h (1, n, D)
        a = torch.softmax(torch.tanh(att.proj(h)) @ att.context, dim=1)  # (1, n)
        return (a.unsqueeze(-1) * h).sum(1)  # (1, D)

    def forward(self, doc):  # one document: list of non-empty sentences
        sents = [self._attend(self.word_encoder.attention,
                              self.word_encoder.rnn(self.embedding(torch.tensor([s])))[0]) for s in doc]
        h = self.composition.rnn(torch.cat(sents)[None])[0]
        return torch.softmax(self.head(self._attend(self.composition.attention, h)), dim=-1)[0]


HAN_CONFIG = {
    "format": "streamsent-model/1", "name": "hand-han", "version": "1.2.3", "labels": ["neg", "pos"],
    "embedding": {"vocab_size": 50, "dim": 8, "padding_idx": 0},
    "word_encoder": {"type": "gru", "hidden": 6, "bidirectional": True, "pooling": "attention", "attention_dim": 5},
    "composition": {"type": "hierarchical", "encoder": {"type": "gru", "hidden": 4, "bidirectional": True,
                                                         "pooling": "attention", "attention_dim": 3}},
}


def test_hand_built_torch_directory_scores_like_torch(tmp_path):
    torch.manual_seed(7)
    net = HandBuiltHAN().eval()
    torch_save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(tmp_path / "weights.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps(HAN_CONFIG))
    rng = np.random.default_rng(7)
    docs = [[rng.integers(1, 50, rng.integers(1, 12)).tolist() for _ in range(rng.integers(1, 6))] for _ in range(20)]
    with torch.inference_mode():
        expect = np.stack([net(d).numpy() for d in docs])
    model = streamsent.load_model(tmp_path)
    table = model.predict(docs)
    probs = np.stack(table.column("probs").to_numpy(zero_copy_only=False))
    assert np.abs(probs - expect).max() <= TOL
    assert table.column("label").to_pylist() == [["neg", "pos"][i] for i in expect.argmax(1)]
    assert table.column_names == ["doc_id", "label", "score", "probs", "word_attention", "sentence_attention"]
    # attention weights of each sentence (word level) and each document (sentence level) sum to one
    for doc_w, doc_s in zip(table.column("word_attention").to_pylist(), table.column("sentence_attention").to_pylist(),
                            strict=True):
        assert all(abs(sum(s) - 1) < 1e-5 for s in doc_w)
        assert abs(sum(doc_s) - 1) < 1e-5


def test_save_and_load_round_trip_float16(tmp_path):
    cfg = make_config({"type": "lstm", "hidden": 4, "pooling": "max"}, {"type": "average"})
    w = random_weights(cfg, seed=2)
    m = Model(cfg, w)
    m.save(tmp_path / "m32")
    m.save(tmp_path / "m16", dtype=np.float16)
    assert load_file(str(tmp_path / "m16" / "weights.safetensors"))["head.bias"].dtype == np.float16
    docs = [[[1, 2, 3], [4]], [[5]]]
    a = m.predict_batch(streamsent.DocBatch.from_lists(docs))[0].probs
    b = streamsent.load_model(tmp_path / "m32").predict_batch(streamsent.DocBatch.from_lists(docs))[0].probs
    c = streamsent.load_model(tmp_path / "m16").predict_batch(streamsent.DocBatch.from_lists(docs))[0].probs
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() < 1e-2 and not np.array_equal(a, c)


def _write(tmp_path, config: dict, weights: dict) -> None:
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(weights, str(tmp_path / "weights.safetensors"))


def test_missing_tensor_wrong_shape_and_extra_tensor_are_named(tmp_path):
    cfg = make_config({"type": "gru", "hidden": 4})
    w = random_weights(cfg)
    broken = dict(w)
    del broken["word_encoder.rnn.bias_hh_l0"]
    _write(tmp_path, cfg.to_dict(), broken)
    missing = r"missing tensor 'word_encoder.rnn.bias_hh_l0' \(expected shape \[12\]\)"
    with pytest.raises(ModelFormatError, match=missing):
        streamsent.load_model(tmp_path)
    broken = dict(w, **{"head.weight": np.zeros((3, 5), np.float32)})
    _write(tmp_path, cfg.to_dict(), broken)
    with pytest.raises(ModelFormatError, match=r"'head.weight' has shape \[3, 5\], expected \[3, 4\]"):
        streamsent.load_model(tmp_path)
    _write(tmp_path, cfg.to_dict(), dict(w, extra=np.zeros(1, np.float32)))
    with pytest.raises(ModelFormatError, match=r"unexpected tensor\(s\) \['extra'\]"):
        streamsent.load_model(tmp_path)


@pytest.mark.parametrize(("patch", "message"), [
    ({"word_encoder": {"type": "transformer"}}, r"word_encoder.type = 'transformer' is not allowed; expected mean"),
    ({"word_encoder": {"type": "gru", "hidden": 4, "pooling": "sum"}}, r"word_encoder.pooling = 'sum'"),
    ({"word_encoder": {"type": "gru"}}, r"word_encoder.hidden = None is not allowed; expected a positive integer"),
    ({"word_encoder": {"type": "gru", "hidden": 4, "pooling": "attention"}}, r"word_encoder.attention_dim"),
    ({"word_encoder": {"type": "cnn", "widths": [3, 0]}}, r"word_encoder.widths"),
    ({"word_encoder": {"type": "gru", "hidden": 4, "hiden": 3}}, r"unknown key word_encoder.hiden"),
    ({"composition": {"type": "paragraph"}, "word_encoder": {"type": "cnn"}}, r"composition.type = 'paragraph'"),
    ({"composition": {"type": "hierarchical"}}, r"composition.encoder = None"),
    ({"composition": {"type": "hierarchical", "encoder": {"type": "cnn"}}}, r"composition.encoder.type = 'cnn'"),
    ({"format": "streamsent-model/2"}, r"format = 'streamsent-model/2' is not allowed; expected \"streamsent-model/1"),
    ({"labels": ["only"]}, r"labels = \['only'\]"),
    ({"embedding": {"vocab_size": 0, "dim": 3}}, r"embedding.vocab_size = 0"),
])
def test_config_errors_name_file_key_and_allowed_values(tmp_path, patch, message):
    raw = make_config({"type": "gru", "hidden": 4}).to_dict() | patch
    (tmp_path / "config.json").write_text(json.dumps(raw))
    save_file({"x": np.zeros(1, np.float32)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ModelFormatError, match=message) as err:
        streamsent.load_model(tmp_path)
    assert str(tmp_path / "config.json") in str(err.value)


def test_unknown_model_name_and_device_are_clear(tmp_path):
    with pytest.raises(ModelFormatError, match="no model directory at 'nope'"):
        streamsent.load_model("nope")
    cfg = make_config({"type": "mean"})
    with pytest.raises(DeviceError, match="use device = 'cpu'"):
        Model(cfg, random_weights(cfg), device="cuda")
    with pytest.raises(DeviceError, match="device = 'tpu' is not known"):
        Model(cfg, random_weights(cfg), device="tpu")


def test_predict_accepts_tables_and_passes_doc_ids(tmp_path):
    cfg = make_config({"type": "gru", "hidden": 4, "bidirectional": True, "pooling": "attention",
                       "attention_dim": 3}, {"type": "flat"})
    m = Model(cfg, random_weights(cfg, seed=4))
    tokens = pa.array([[[1, 2], [3]], [], [[4, 5, 6]]], pa.list_(pa.list_(pa.int32())))
    t = m.predict(pa.table({"doc_id": ["a", "b", "c"], "tokens": tokens}), batch_size=2)
    assert t.column("doc_id").to_pylist() == ["a", "b", "c"]
    labels = t.column("label").to_pylist()  # the empty document "b" is not scored: null label, score, probs
    assert t.num_rows == 3 and labels[1] is None and {labels[0], labels[2]} <= set(cfg.labels)
    direct = m.predict([[[1, 2], [3]], [], [[4, 5, 6]]])
    assert t.column("probs").to_pylist()[1] is None and direct.column("probs").to_pylist()[1] is None
    assert np.allclose(np.stack(t.column("probs").to_numpy(zero_copy_only=False)[[0, 2]]),
                       np.stack(direct.column("probs").to_numpy(zero_copy_only=False)[[0, 2]]))
    w = t.column("word_attention").to_pylist()
    assert [len(s) for s in w[0]] == [2, 1] and w[1] is None and abs(sum(w[0][0]) + sum(w[0][1]) - 1) < 1e-6
    empty = m.predict([])
    assert empty.num_rows == 0 and empty.column_names[:4] == ["doc_id", "label", "score", "probs"]
    with pytest.raises(BatchError, match="outside the model's vocabulary"):
        m.predict([[[1, 60]]])
    with pytest.raises(BatchError, match="has no tokenizer.json"):
        m.predict(["raw text needs a tokenizer"])
    with pytest.raises(BatchError, match="needs a 'text' or a 'tokens' column"):
        m.predict(pa.table({"doc_id": [1], "body": ["x"]}))
