"""A Numba kernel that writes a batch of flat JSON objects into one byte buffer, column by column.

The Kafka sink sends one JSON message per scored document. For short documents, building those strings in Python
(a dict per row, `json` per row, `repr` per float) was the largest piece of per-document work left on the GIL
(docs/bench-pipeline.md); here one nogil pass writes every row. `rows.encode_rows` describes the object as a
*program* of fields, each a literal prefix (`{"doc_id":`, `,"score":`, ...) followed by one value from a typed
column, and this kernel runs the program for every row.

Output is byte for byte what Python's `json` encoder (`ensure_ascii=False`, compact separators) writes for the
same values, with floats first rounded as `rows.round_float` rounds them: strings escape `"`, `\\` and control
characters exactly as `json.encoder.c_encode_basestring` does; numbers print as `repr` would. A float that `repr`
would print with more care than a plain decimal can (|k| >= 10**15 after scaling) flags its row, which the caller
then writes with the generic encoder.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["STR", "INT", "FLOAT", "LITERAL", "write_rows", "MAX_EXACT"]

STR, INT, FLOAT, LITERAL = 0, 1, 2, 3  # field kinds
MAX_EXACT = 10**15  # decimals with at most 15 significant digits survive a trip through float64 (DBL_DIG)

_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_ESCAPES = np.zeros(256, np.uint8)  # byte -> the letter after the backslash, or 1 = \u00XX, 0 = as is
for _c, _e in ((0x22, b'"'), (0x5C, b"\\"), (0x08, b"b"), (0x0C, b"f"), (0x0A, b"n"), (0x0D, b"r"), (0x09, b"t")):
    _ESCAPES[_c] = _e[0]
for _c in range(0x20):
    if _ESCAPES[_c] == 0:
        _ESCAPES[_c] = 1


@njit(cache=True, nogil=True)
def _put_string(out, pos, data, start, end, escapes, hexdigits):
    out[pos] = 34  # "
    pos += 1
    for i in range(start, end):
        b = data[i]
        e = escapes[b]
        if e == 0:
            out[pos] = b
            pos += 1
        elif e == 1:
            out[pos] = 92
            out[pos + 1] = 117  # u
            out[pos + 2] = 48
            out[pos + 3] = 48
            out[pos + 4] = hexdigits[b >> 4]
            out[pos + 5] = hexdigits[b & 15]
            pos += 6
        else:
            out[pos] = 92
            out[pos + 1] = e
            pos += 2
    out[pos] = 34
    return pos + 1


@njit(cache=True, nogil=True)
def _put_digits(out, pos, v):
    """The decimal digits of v >= 0."""
    if v == 0:
        out[pos] = 48
        return pos + 1
    n = 0
    t = v
    while t > 0:
        t //= 10
        n += 1
    for i in range(n - 1, -1, -1):
        out[pos + i] = 48 + v % 10
        v //= 10
    return pos + n


@njit(cache=True, nogil=True)
def _put_int(out, pos, v):
    if v < 0:
        out[pos] = 45
        pos += 1
        v = -v
    return _put_digits(out, pos, v)


@njit(cache=True, nogil=True)
def _put_scaled(out, pos, k, digits):
    """repr(k / 10**digits) for |k| < MAX_EXACT: the shortest decimal, with Python's choice of notation
    (scientific below 1e-4, e.g. 5e-05 and 1.2e-05; '0.0' and '1.0' keep one decimal)."""
    if k < 0:
        out[pos] = 45
        pos += 1
        k = -k
    if k == 0:
        out[pos] = 48
        out[pos + 1] = 46
        out[pos + 2] = 48
        return pos + 3
    scale = 1
    for _ in range(digits):
        scale *= 10
    if digits <= 4 or k >= scale // 10000:  # value >= 1e-4: fixed notation
        pos = _put_digits(out, pos, k // scale)
        out[pos] = 46  # .
        pos += 1
        frac = k % scale
        if frac == 0:
            out[pos] = 48
            return pos + 1
        width = digits
        while frac % 10 == 0:
            frac //= 10
            width -= 1
        for i in range(width - 1, -1, -1):
            out[pos + i] = 48 + frac % 10
            frac //= 10
        return pos + width
    exp = -digits  # value = k * 10**exp with k < 10**(digits - 4): strip zeros, then d.ddd e-XX
    while k % 10 == 0:
        k //= 10
        exp += 1
    n = 0
    t = k
    while t > 0:
        t //= 10
        n += 1
    exp += n - 1
    lead = k
    for _ in range(n - 1):
        lead //= 10
    out[pos] = 48 + lead
    pos += 1
    if n > 1:
        out[pos] = 46
        pos += 1
        rest = k
        for i in range(n - 2, -1, -1):
            out[pos + i] = 48 + rest % 10
            rest //= 10
        pos += n - 1
    out[pos] = 101  # e
    out[pos + 1] = 45  # - (always: value < 1e-4)
    pos += 2
    e = -exp
    if e < 10:
        out[pos] = 48
        pos += 1
    return _put_digits(out, pos, e)


@njit(cache=True, nogil=True)
def write_rows(n, lit, lit_off, kind, col, digits, omit, s_off, s_data, s_valid, i_val, i_valid, f_val, f_valid,
               out, row_end, fallback, escapes, hexdigits):
    """Run the field program for rows 0..n-1 into `out` (sized by the caller for the worst case).

    lit, lit_off        uint8[*], int64[F + 1]: field f's literal prefix is lit[lit_off[f]:lit_off[f + 1]]
    kind, col, digits   int64[F]: STR/INT/FLOAT/LITERAL, the value's row in its typed table, decimals (FLOAT)
    omit                int64[F]: 1 = leave the field out (prefix too) where its value is null, 0 = write null
    s_off [S, n + 1]    string j of row r is s_data[s_off[j, r]:s_off[j, r + 1]] (UTF-8); s_valid [S, n]
    i_val, i_valid      int64[I, n], bool[I, n]
    f_val, f_valid      float64[Fl, n], bool[Fl, n]: non-finite floats are written as null
    row_end [n]         out[row_end[r - 1]:row_end[r]] is row r (row_end[-1] = 0)
    fallback [n]        set where a float needs more than MAX_EXACT allows: the caller encodes that row itself
    """
    pos = 0
    for r in range(n):
        for f in range(kind.shape[0]):
            k = kind[f]
            j = col[f]
            if k == STR:
                valid = s_valid[j, r]
            elif k == INT:
                valid = i_valid[j, r]
            elif k == FLOAT:
                valid = f_valid[j, r] and np.isfinite(f_val[j, r])
            else:
                valid = True
            if not valid and omit[f] == 1:
                continue
            for i in range(lit_off[f], lit_off[f + 1]):
                out[pos] = lit[i]
                pos += 1
            if k == LITERAL:
                continue
            if not valid:
                out[pos] = 110  # null
                out[pos + 1] = 117
                out[pos + 2] = 108
                out[pos + 3] = 108
                pos += 4
            elif k == STR:
                pos = _put_string(out, pos, s_data, s_off[j, r], s_off[j, r + 1], escapes, hexdigits)
            elif k == INT:
                pos = _put_int(out, pos, i_val[j, r])
            else:
                scale = 1.0
                for _ in range(digits[f]):
                    scale *= 10.0
                x = np.rint(f_val[j, r] * scale)
                if abs(x) >= MAX_EXACT:
                    fallback[r] = True
                    out[pos] = 48  # a placeholder; the caller replaces the row
                    pos += 1
                else:
                    pos = _put_scaled(out, pos, np.int64(x), digits[f])
        row_end[r] = pos
    return pos


def escapes() -> tuple[np.ndarray, np.ndarray]:
    """The escape table and hex digits `write_rows` takes (module constants, passed in so the kernel caches)."""
    return _ESCAPES, _HEX
