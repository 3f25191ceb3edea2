import numpy as np
import pyarrow as pa
import pytest

from streamsent import BatchError, DocBatch

LL = pa.list_(pa.list_(pa.int32()))


def test_from_lists_builds_csr_offsets():
    b = DocBatch.from_lists([[[1, 2], [3]], [], [[], [4, 5, 6]]])
    assert b.token_ids.tolist() == [1, 2, 3, 4, 5, 6] and b.token_ids.dtype == np.int32
    assert b.sent_offsets.tolist() == [0, 2, 3, 3, 6]
    assert b.doc_offsets.tolist() == [0, 2, 2, 4]
    assert b.doc_token_offsets().tolist() == [0, 3, 3, 6]
    assert (b.n_docs, b.n_sentences, b.n_tokens) == (3, 4, 6)
    assert DocBatch.from_lists([]).n_docs == 0


def test_from_arrow_shares_the_values_buffer_and_handles_slices():
    arr = pa.array([[[1, 2], [3]], [], [[], [4, 5, 6]], [[7]]], LL)
    whole = DocBatch.from_arrow(arr)
    assert np.shares_memory(whole.token_ids, arr.values.values.to_numpy())
    part = DocBatch.from_arrow(arr.slice(2, 2))
    assert part.to_lists() == [[[], [4, 5, 6]], [[7]]]
    assert np.shares_memory(part.token_ids, arr.values.values.to_numpy())
    assert part.sent_offsets[0] == 0 and part.doc_offsets[0] == 0
    chunked = pa.chunked_array([arr.slice(0, 2), arr.slice(2)])
    assert DocBatch.from_arrow(chunked).to_lists() == whole.to_lists()


def test_from_arrow_nulls_and_wide_ints():
    arr = pa.array([[[1]], None, [[2, 3]]], LL)
    assert DocBatch.from_arrow(arr).to_lists() == [[[1]], [], [[2, 3]]]
    wide = pa.array([[[1, 2]], [[3]]], pa.list_(pa.list_(pa.int64())))
    b = DocBatch.from_arrow(wide)
    assert b.token_ids.dtype == np.int32 and b.to_lists() == [[[1, 2]], [[3]]]
    with pytest.raises(BatchError, match="null sentence"):
        DocBatch.from_arrow(pa.array([[[1], None]], LL))
    with pytest.raises(BatchError, match="null token ids"):
        DocBatch.from_arrow(pa.array([[[1, None]]], LL))
    with pytest.raises(BatchError, match=r"list<list<int32>>"):
        DocBatch.from_arrow(pa.array([[1, 2]], pa.list_(pa.int32())))


def test_bad_inputs_are_clear_errors():
    with pytest.raises(BatchError, match="document 0 is a string"):
        DocBatch.from_lists(["not tokens"])
    with pytest.raises(BatchError, match=r"\[0, 2\*\*31\)"):
        DocBatch.from_lists([[[-1]]])
    with pytest.raises(BatchError, match="must be non-decreasing"):
        DocBatch(np.zeros(2, np.int32), np.array([0, 2, 1, 2]), np.array([0, 3]))
    with pytest.raises(BatchError, match="1-d int32 array"):
        DocBatch(np.zeros(2, np.int64), np.array([0, 2]), np.array([0, 1]))
    with pytest.raises(BatchError, match="outside the model's vocabulary"):
        DocBatch.from_lists([[[5]]]).check_vocab(5)
