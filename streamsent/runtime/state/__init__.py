"""Per-key carried state for conversations scored as streams (docs/design.md, "State").

- `store`: the bounded in-memory store (slab + dict, LRU, TTL, re-delivery detection);
- `scorer`: `KeyedScorer`, a micro-batch of keyed messages -> running scores, from and back into the store;
- `checkpoint`: the store and the committed offsets in one atomically written local file;
- `changelog`: a compacted Kafka topic per source topic, so a partition's state follows the partition;
- `inspect`: one key's state as a summary (``streamsent state inspect KEY``).
- `live`: `LiveState`, the hooks a running pipeline calls (score, written, before_commit, rebalances).
"""

from .checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from .scorer import KEYED_SCHEMA, KeyedResult, KeyedScorer, check_model
from .store import Entries, Removal, StateChanges, StateLayout, StateStore

__all__ = ["Checkpoint", "Entries", "KEYED_SCHEMA", "KeyedResult", "KeyedScorer", "Removal", "StateChanges",
           "StateLayout", "StateStore", "check_model", "load_checkpoint", "save_checkpoint"]
