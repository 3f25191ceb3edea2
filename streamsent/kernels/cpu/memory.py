"""Software prefetch, for the rows a kernel will read next but whose addresses the hardware cannot predict.

A recurrent step reads one vocabulary-table row per sequence (W_ih·x_t + b_ih), at a data-dependent address in
a table of tens of MB. The step's GEMM is thousands of instructions long, so out-of-order execution never
reaches the next step's row early: every step waited for a cache miss. Prefetching step t+1's rows at the
start of step t hides that wait behind the GEMM.
"""

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from . import FASTMATH

LINE = 16  # float32 per 64-byte cache line


@intrinsic
def _prefetch(typingctx, arr, row, col):
    """Hint the cache line holding arr[row, col] (2-D array) into L1 for reading; no effect on results."""
    if not (isinstance(arr, types.Array) and arr.ndim == 2):
        return None
    sig = types.void(arr, row, col)

    def codegen(context, builder, signature, args):
        aryty, rowty, colty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        idx = [context.cast(builder, args[1], rowty, types.intp), context.cast(builder, args[2], colty, types.intp)]
        ptr = cgutils.get_item_pointer(context, builder, aryty, ary, idx, wraparound=False)
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
        builder.call(fn, [ptr, i32(0), i32(3), i32(1)])  # read, keep in all levels, data cache
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def prefetch_row(arr, row):
    """Prefetch every cache line of arr[row] (arr 2-D, C-contiguous float32)."""
    for c in range(0, arr.shape[1], LINE):
        _prefetch(arr, row, c)


@njit(cache=True, nogil=True, fastmath=FASTMATH, error_model="numpy", inline="always")
def prefetch_head(arr, row, lines):
    """Prefetch the first `lines` cache lines of arr[row]: for rows long enough (the CNN's 4.8 KB) that the
    hardware's stream prefetcher fetches the rest once it sees them read in order, at a fraction of the
    instructions of prefetching every line. With `lines` a constant the loop unrolls (a bound that depends on
    the row length did not, and cost 3 % when the rows were already in cache); past a shorter row it touches
    the next one, and a prefetch never faults."""
    for c in range(0, lines * LINE, LINE):
        _prefetch(arr, row, c)
