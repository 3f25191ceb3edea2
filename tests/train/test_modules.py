"""streamsent.train.modules against docs/model-format.md.

The oracle here is a slow per-document loop over the model's own submodules on batch-size-1, unpadded
sequences, following the doc line by line; the batched padded forward must match it.
"""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from streamsent.errors import ModelFormatError
from streamsent.train.modules import (
    SentimentModel,
    encode_docs,
    load_model_dir,
    parse_config,
    random_init_,
    save_model_dir,
)

V, E = 23, 4
ATOL = 1e-6

# Ragged on purpose: empty sentences (first, middle, last), empty documents, a document of only empty
# sentences, length-1 sentences (shorter than every CNN width), a long sentence, and token id 0 as a real token.
DOCS = [
    [[1, 2, 3], [], [4, 5], [6]],
    [],
    [[7]],
    [[], [], []],
    [[], [8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18], [0, 2]],
    [[19, 20], [21, 22], [1, 1]],
    [[3, 3, 3, 3], []],
    [[5], [6], [7], [8], [9]],
]


def make_config(word: dict, composition: dict | None = None, labels: int = 3) -> dict:
    config = {
        "format": "streamsent-model/1",
        "name": "test",
        "version": "0.0.1",
        "labels": [f"l{i}" for i in range(labels)],
        "embedding": {"vocab_size": V, "dim": E, "padding_idx": 0},
        "word_encoder": word,
    }
    if composition is not None:
        config["composition"] = composition
    return config


def recurrent(kind: str, bidirectional: bool, pooling: str, hidden: int = 3) -> dict:
    spec = {"type": kind, "hidden": hidden, "bidirectional": bidirectional, "pooling": pooling}
    if pooling == "attention":
        spec["attention_dim"] = 5
    return spec


def build(config: dict, seed: int = 0, dtype: torch.dtype = torch.float32) -> SentimentModel:
    return random_init_(SentimentModel(config), seed).to(dtype)


# ------------------------------------------------------------------------------- the slow oracle


def slow_pool(enc, pooling: str, o: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """Pool outputs o (n, D) of one sequence, n >= 1."""
    if pooling == "last":
        return last
    if pooling == "mean":
        return o.sum(0) / o.shape[0]
    if pooling == "max":
        return o.max(0).values
    u = torch.tanh(enc.attention.proj(o))  # (n, A)
    a = torch.softmax(u @ enc.attention.context, dim=0)  # (n,)
    return (a[:, None] * o).sum(0)


def slow_recurrent(enc, spec, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs (n, D) of one unpadded sequence x (n, in) from zero state, and `last` read off the outputs."""
    out, _ = enc.rnn(x[None])  # no packing, batch of one
    o = out[0]
    if spec.bidirectional:
        h = spec.hidden  # forward state after the last token, backward state after the first token
        return o, torch.cat([o[-1, :h], o[0, h:]])
    return o, o[-1]


def slow_encode(enc, spec, x: torch.Tensor, out_dim: int) -> torch.Tensor:
    """One sequence x (n, in) -> pooled (D,)."""
    n = x.shape[0]
    if n == 0:
        return x.new_zeros(out_dim)
    if spec.type == "mean":
        return x.sum(0) / n
    if spec.type == "cnn":
        parts = []
        for conv, w in zip(enc.convs, spec.widths, strict=True):
            xt = x.T[None]  # (1, E, n)
            if n < w:  # right-pad with zero vectors to exactly one window
                xt = torch.cat([xt, xt.new_zeros(1, xt.shape[1], w - n)], dim=2)
            parts.append(torch.relu(conv(xt))[0].max(1).values)
        return torch.cat(parts)
    o, last = slow_recurrent(enc, spec, x)
    return slow_pool(enc, spec.pooling, o, last)


def slow_paragraph(model: SentimentModel, sents: list[torch.Tensor]) -> torch.Tensor:
    """Forward state carried from sentence to sentence; the backward cell per sentence from zero."""
    enc, spec = model.word_encoder, model.spec.word_encoder
    h = spec.hidden
    if not sents:
        return sents_zero(model)
    h_fwd = torch.zeros(1, 1, h, dtype=sents[0].dtype)
    c_fwd = torch.zeros_like(h_fwd)
    outs = []
    for x in sents:
        h0 = torch.cat([h_fwd, torch.zeros_like(h_fwd)]) if spec.bidirectional else h_fwd
        c0 = torch.cat([c_fwd, torch.zeros_like(c_fwd)]) if spec.bidirectional else c_fwd
        out, state = enc.rnn(x[None], (h0, c0) if spec.type == "lstm" else h0)
        h_n, c_n = state if spec.type == "lstm" else (state, None)
        h_fwd = h_n[:1]
        if c_n is not None:
            c_fwd = c_n[:1]
        outs.append(out[0])
    o = torch.cat(outs)
    last = torch.cat([o[-1, :h], outs[-1][0, h:]]) if spec.bidirectional else o[-1]
    return slow_pool(enc, spec.pooling, o, last)


def sents_zero(model: SentimentModel) -> torch.Tensor:
    return torch.zeros(model.head.in_features, dtype=model.head.weight.dtype)


def slow_logits(model: SentimentModel, docs: list[list[list[int]]]) -> torch.Tensor:
    spec = model.spec
    word_dim = model.word_encoder.out_dim
    rows = []
    for doc in docs:
        sents = [model.embedding(torch.tensor(s, dtype=torch.long)) for s in doc if s]  # empty: skipped
        if spec.composition == "flat":
            x = torch.cat(sents) if sents else model.embedding.weight[:0]
            vec = slow_encode(model.word_encoder, spec.word_encoder, x, word_dim)
        elif spec.composition == "paragraph":
            vec = slow_paragraph(model, sents)
        else:
            vecs = [slow_encode(model.word_encoder, spec.word_encoder, x, word_dim) for x in sents]
            if spec.composition == "average":
                vec = torch.stack(vecs).mean(0) if vecs else sents_zero(model)
            else:
                seq = torch.stack(vecs) if vecs else model.embedding.weight.new_zeros(0, word_dim)
                vec = slow_encode(model.composition, spec.doc_encoder, seq, model.composition.out_dim)
        rows.append(model.head(vec))
    return torch.stack(rows)


def batched_logits(model: SentimentModel, docs: list[list[list[int]]]) -> torch.Tensor:
    tokens, sent_lengths = encode_docs(docs)
    return model(tokens, sent_lengths)


# ------------------------------------------------------------------------------------------ configs

POOLINGS = ("last", "mean", "max", "attention")
DOC_ENCODERS = [
    recurrent(k, b, p, hidden=2) for k, b, p in itertools.product(("gru", "lstm", "rnn"), (True, False), POOLINGS)
]

RECURRENT_CASES = [
    make_config(recurrent(kind, bi, pooling), composition)
    for i, (kind, bi, pooling, composition) in enumerate(
        itertools.product(
            ("rnn", "lstm", "gru"),
            (False, True),
            POOLINGS,
            ({"type": "flat"}, {"type": "paragraph"}, {"type": "average"}, {"type": "hierarchical"}),
        )
    )
]
for i, cfg in enumerate(RECURRENT_CASES):  # give each hierarchical case a different document encoder
    if cfg["composition"]["type"] == "hierarchical":
        cfg["composition"] = {"type": "hierarchical", "encoder": DOC_ENCODERS[i % len(DOC_ENCODERS)]}

OTHER_CASES = [
    make_config(word, composition)
    for word, composition in itertools.product(
        ({"type": "mean"}, {"type": "cnn", "widths": [2, 3, 5], "maps": 3}, {"type": "cnn", "maps": 2}),
        (None, {"type": "average"}, {"type": "hierarchical", "encoder": recurrent("gru", True, "attention")}),
    )
]

HAN = make_config(
    {"type": "gru", "hidden": 3, "bidirectional": True, "pooling": "attention", "attention_dim": 5},
    {
        "type": "hierarchical",
        "encoder": {"type": "gru", "hidden": 2, "bidirectional": True, "pooling": "attention", "attention_dim": 6},
    },
    labels=2,
)


def case_id(cfg: dict) -> str:
    w, c = cfg["word_encoder"], cfg.get("composition", {"type": "flat"})
    word = "-".join(str(w.get(k, "")) for k in ("type", "bidirectional", "pooling", "widths") if k in w)
    doc = c["type"] + ("-" + "-".join(str(v) for v in c["encoder"].values()) if "encoder" in c else "")
    return f"{word}/{doc}"


# -------------------------------------------------------------------------------------- state dicts


def rnn_names(prefix: str, gates: int, in_dim: int, hidden: int, bidirectional: bool) -> dict:
    names = {}
    for sfx in ("", "_reverse") if bidirectional else ("",):
        names |= {
            f"{prefix}.rnn.weight_ih_l0{sfx}": (gates * hidden, in_dim),
            f"{prefix}.rnn.weight_hh_l0{sfx}": (gates * hidden, hidden),
            f"{prefix}.rnn.bias_ih_l0{sfx}": (gates * hidden,),
            f"{prefix}.rnn.bias_hh_l0{sfx}": (gates * hidden,),
        }
    return names


def attention_names(prefix: str, attention_dim: int, width: int) -> dict:
    return {
        f"{prefix}.attention.proj.weight": (attention_dim, width),
        f"{prefix}.attention.proj.bias": (attention_dim,),
        f"{prefix}.attention.context": (attention_dim,),
    }


def shapes(model: SentimentModel) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_state_dict_han() -> None:
    expected = {"embedding.weight": (V, E)}
    expected |= rnn_names("word_encoder", 3, E, 3, True)
    expected |= attention_names("word_encoder", 5, 6)
    expected |= rnn_names("composition", 3, 6, 2, True)
    expected |= attention_names("composition", 6, 4)
    expected |= {"head.weight": (2, 4), "head.bias": (2,)}
    assert shapes(SentimentModel(HAN)) == expected


def test_state_dict_cnn() -> None:
    cfg = make_config({"type": "cnn", "widths": [2, 3, 5], "maps": 7}, {"type": "average"})
    expected = {"embedding.weight": (V, E)}
    for i, w in enumerate([2, 3, 5]):
        expected |= {f"word_encoder.convs.{i}.weight": (7, E, w), f"word_encoder.convs.{i}.bias": (7,)}
    expected |= {"head.weight": (3, 21), "head.bias": (3,)}
    assert shapes(SentimentModel(cfg)) == expected
    default = SentimentModel(make_config({"type": "cnn"}))  # widths [3, 4, 5], maps 100
    assert shapes(default)["word_encoder.convs.2.weight"] == (100, E, 5)
    assert shapes(default)["head.weight"] == (3, 300)


@pytest.mark.parametrize(
    ("word", "composition", "expected_word", "head_in"),
    [
        ({"type": "mean"}, None, {}, E),
        ({"type": "lstm", "hidden": 3}, {"type": "paragraph"}, rnn_names("word_encoder", 4, E, 3, False), 3),
        (recurrent("rnn", True, "max"), {"type": "average"}, rnn_names("word_encoder", 1, E, 3, True), 6),
        (
            recurrent("lstm", False, "attention"),
            {"type": "flat"},
            rnn_names("word_encoder", 4, E, 3, False) | attention_names("word_encoder", 5, 3),
            3,
        ),
    ],
)
def test_state_dict_names(word: dict, composition: dict | None, expected_word: dict, head_in: int) -> None:
    expected = {"embedding.weight": (V, E), **expected_word, "head.weight": (3, head_in), "head.bias": (3,)}
    assert shapes(SentimentModel(make_config(word, composition))) == expected


# -------------------------------------------------------------------------------- batched == slow


@pytest.mark.parametrize("config", RECURRENT_CASES + OTHER_CASES + [HAN], ids=case_id)
def test_batched_matches_per_document_loop(config: dict) -> None:
    model = build(config, seed=len(case_id(config)))
    with torch.no_grad():
        fast = batched_logits(model, DOCS)
        slow = slow_logits(model, DOCS)
    assert fast.shape == (len(DOCS), len(config["labels"]))
    torch.testing.assert_close(fast, slow, atol=ATOL, rtol=0)


@pytest.mark.parametrize("config", [HAN, OTHER_CASES[4], RECURRENT_CASES[13], RECURRENT_CASES[45]], ids=case_id)
def test_equal_lengths_skip_packing(config: dict) -> None:
    docs = [[[1, 2, 3], [4, 5, 6]], [[7, 8, 9], [10, 11, 12]], [[0, 0, 1], [2, 2, 2]]]
    model = build(config, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(batched_logits(model, docs), slow_logits(model, docs), atol=ATOL, rtol=0)


def test_padding_beyond_the_lengths_is_ignored() -> None:
    model = build(HAN, seed=5)
    tokens, sent_lengths = encode_docs(DOCS)
    garbage = torch.randint(0, V, (tokens.shape[0], tokens.shape[1] + 2, tokens.shape[2] + 3))
    garbage[:, : tokens.shape[1], : tokens.shape[2]] = tokens
    padded_lengths = torch.zeros(garbage.shape[:2], dtype=torch.long)
    padded_lengths[:, : sent_lengths.shape[1]] = sent_lengths
    with torch.no_grad():
        torch.testing.assert_close(model(garbage, padded_lengths), model(tokens, sent_lengths), atol=ATOL, rtol=0)


@pytest.mark.parametrize("config", RECURRENT_CASES[::7] + OTHER_CASES, ids=case_id)
def test_float64_parity_is_tight(config: dict) -> None:
    model = build(config, seed=11, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(batched_logits(model, DOCS), slow_logits(model, DOCS), atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------ edge cases of the doc


@pytest.mark.parametrize("pooling", POOLINGS)
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_unidirectional_paragraph_equals_flat(kind: str, pooling: str) -> None:
    flat = build(make_config(recurrent(kind, False, pooling), {"type": "flat"}), seed=7)
    paragraph = SentimentModel(make_config(recurrent(kind, False, pooling), {"type": "paragraph"}))
    paragraph.load_state_dict(flat.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(batched_logits(paragraph, DOCS), batched_logits(flat, DOCS), atol=0, rtol=0)


@pytest.mark.parametrize("config", RECURRENT_CASES[::5] + OTHER_CASES + [HAN], ids=case_id)
def test_empty_documents_score_softmax_of_head_bias(config: dict) -> None:
    model = build(config, seed=2)
    expected = torch.softmax(model.head.bias.detach(), dim=0)
    probs = model.predict_proba([[], [[], []], [[1, 2]], []])
    for row in (0, 1, 3):
        torch.testing.assert_close(probs[row], expected, atol=ATOL, rtol=0)
    only_empty = model.predict_proba([[], [[]]])  # no token anywhere in the batch
    torch.testing.assert_close(only_empty, expected.expand(2, -1), atol=ATOL, rtol=0)


def test_cnn_short_sentence_is_zero_padded_to_one_window() -> None:
    model = build(make_config({"type": "cnn", "widths": [2, 3, 5], "maps": 3}), seed=4)
    with torch.no_grad():
        x = model.embedding.weight[[3, 4]]  # n = 2 < 3 and < 5
        manual = []
        for conv, w in zip(model.word_encoder.convs, (2, 3, 5), strict=True):
            padded = torch.cat([x, x.new_zeros(w - 2, E)]) if w > 2 else x  # (w, E)
            manual.append(torch.relu((conv.weight * padded.T[None]).sum((1, 2)) + conv.bias))
        got = model.word_encoder(x[None], torch.tensor([2]))[0]
        # in a padded batch the steps past the length are ignored whatever they hold
        batch = torch.randn(3, 7, E)
        batch[0, :2] = x
        lengths = torch.tensor([2, 7, 0])
        batched = model.word_encoder(batch, lengths)
        alone = model.word_encoder(batch[1:2], lengths[1:2])[0]
    torch.testing.assert_close(got, torch.cat(manual), atol=ATOL, rtol=0)
    torch.testing.assert_close(batched[0], got, atol=ATOL, rtol=0)
    torch.testing.assert_close(batched[1], alone, atol=ATOL, rtol=0)
    assert not batched[2].any()  # an empty sequence encodes to zeros


def test_predict_proba_restores_mode_and_sums_to_one() -> None:
    model = build(HAN, seed=1).train()
    probs = model.predict_proba(DOCS)
    assert model.training
    assert probs.shape == (len(DOCS), 2)
    torch.testing.assert_close(probs.sum(1), torch.ones(len(DOCS)), atol=1e-6, rtol=0)
    with torch.no_grad():
        torch.testing.assert_close(probs, torch.softmax(slow_logits(model, DOCS), 1), atol=ATOL, rtol=0)


@pytest.mark.parametrize("config", [HAN, RECURRENT_CASES[31], RECURRENT_CASES[47], OTHER_CASES[5]], ids=case_id)
def test_forward_is_differentiable(config: dict) -> None:
    model = build(config, seed=9).train()
    logits = batched_logits(model, DOCS + [[]])
    torch.nn.functional.cross_entropy(logits, torch.arange(len(DOCS) + 1) % 2).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.head.bias.grad.abs().sum() > 0


def test_encode_docs() -> None:
    tokens, sent_lengths = encode_docs([[[1, 2], [], [3]], [], [[4, 5, 6]]])
    assert tokens.dtype == sent_lengths.dtype == torch.long
    assert sent_lengths.tolist() == [[2, 0, 1], [0, 0, 0], [3, 0, 0]]
    assert tokens.tolist() == [
        [[1, 2, 0], [0, 0, 0], [3, 0, 0]],
        [[0, 0, 0], [0, 0, 0], [0, 0, 0]],
        [[4, 5, 6], [0, 0, 0], [0, 0, 0]],
    ]
    empty_tokens, empty_lengths = encode_docs([])
    assert empty_tokens.shape == (0, 0, 0) and empty_lengths.shape == (0, 0)


def test_random_init_is_seeded_and_nontrivial() -> None:
    a, b, c = build(HAN, seed=1), build(HAN, seed=1), build(HAN, seed=2)
    for (name, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), name
        assert not torch.equal(pa, pc), name
        bound = 1.0 if name.startswith("embedding.") else 0.5
        assert pa.abs().max() <= bound and pa.std() > bound / 10, name


# ---------------------------------------------------------------------------------------- save / load


def test_save_load_round_trip(tmp_path) -> None:
    model = build(HAN, seed=8)
    save_model_dir(model, tmp_path / "m", HAN)
    assert json.loads((tmp_path / "m" / "config.json").read_text()) == HAN
    assert set(load_file(str(tmp_path / "m" / "weights.safetensors"))) == set(model.state_dict())
    loaded = load_model_dir(tmp_path / "m")
    assert not loaded.training
    assert torch.equal(loaded.predict_proba(DOCS), model.predict_proba(DOCS))


def test_load_float16_weights(tmp_path) -> None:
    model = build(OTHER_CASES[4], seed=8)
    save_model_dir(model, tmp_path, OTHER_CASES[4])
    half = {k: v.half() for k, v in load_file(str(tmp_path / "weights.safetensors")).items()}
    save_file(half, str(tmp_path / "weights.safetensors"))
    loaded = load_model_dir(tmp_path)
    assert loaded.head.weight.dtype == torch.float32
    torch.testing.assert_close(loaded.predict_proba(DOCS), model.predict_proba(DOCS), atol=2e-2, rtol=0)


def test_load_is_strict(tmp_path) -> None:
    model = build(HAN, seed=8)
    save_model_dir(model, tmp_path, HAN)
    tensors = load_file(str(tmp_path / "weights.safetensors"))
    save_file(
        {k: v for k, v in tensors.items() if k != "composition.attention.context"},
        str(tmp_path / "weights.safetensors"),
    )
    with pytest.raises(ModelFormatError, match="composition.attention.context"):
        load_model_dir(tmp_path)
    save_file(tensors | {"head.weight": torch.zeros(2, 5)}, str(tmp_path / "weights.safetensors"))
    with pytest.raises(ModelFormatError, match="head.weight"):
        load_model_dir(tmp_path)


def test_save_refuses_a_config_of_another_architecture(tmp_path) -> None:
    with pytest.raises(ModelFormatError):
        save_model_dir(build(HAN), tmp_path, make_config({"type": "mean"}))


# ------------------------------------------------------------------------------------------- config


def test_config_defaults() -> None:
    spec = parse_config(
        {"labels": ["a", "b"], "embedding": {"vocab_size": 5, "dim": 2}, "word_encoder": {"type": "gru", "hidden": 4}}
    )
    assert spec.composition == "flat" and spec.padding_idx == 0
    assert spec.word_encoder.pooling == "last" and not spec.word_encoder.bidirectional
    cnn = parse_config(make_config({"type": "cnn"})).word_encoder
    assert (cnn.widths, cnn.maps, cnn.pooling) == ((3, 4, 5), 100, "max")
    assert parse_config(make_config({"type": "mean"})).word_encoder.pooling == "mean"


@pytest.mark.parametrize(
    ("mutate", "key"),
    [
        (lambda c: c.update(extra=1), "extra"),
        (lambda c: c["word_encoder"].update(hiden=3), "hiden"),
        (lambda c: c["word_encoder"].update(pooling="sum"), "word_encoder.pooling"),
        (lambda c: c["word_encoder"].pop("attention_dim"), "word_encoder.attention_dim"),
        (lambda c: c["word_encoder"].update(hidden=0), "word_encoder.hidden"),
        (lambda c: c.update(composition={"type": "hierarchical"}), "composition.encoder"),
        (lambda c: c.update(composition={"type": "tree"}), "composition.type"),
        (lambda c: c.update(format="streamsent-model/2"), "format"),
        (lambda c: c.update(word_encoder={"type": "cnn", "pooling": "mean"}), "word_encoder.pooling"),
        (lambda c: c.update(word_encoder={"type": "mean"}, composition={"type": "paragraph"}), "paragraph"),
        (lambda c: c["composition"]["encoder"].update(type="cnn"), "composition.encoder.type"),
    ],
)
def test_config_errors_name_the_key(mutate, key: str) -> None:
    config = json.loads(json.dumps(HAN))
    mutate(config)
    with pytest.raises(ModelFormatError, match=key.replace(".", r"\.")):
        SentimentModel(config)


def test_metadata_is_kept() -> None:
    config = HAN | {"metadata": {"trained_on": "imdb"}}
    assert SentimentModel(config).config["metadata"] == {"trained_on": "imdb"}
