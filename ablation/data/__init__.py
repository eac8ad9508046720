"""Corpora, their sources, and the batches models read.

- ``corpus``: ``Corpus`` / ``Dataset`` and the deterministic train/val split;
- ``sources``: ``load_dataset("synthphone:small" | "libriphone:PATH" | "timit11:PATH")``
  and ``export`` to the libriphone layout;
- ``windows``: n-frame context windows gathered per batch (``WindowBatches``);
- ``sequences``: padded, length-bucketed utterances or chunks (``SequenceBatches``);
- ``info``: summary statistics (``summarize``).
"""

from ablation.data.corpus import Corpus, Dataset, Splits, make_splits, split_utterances
from ablation.data.info import ceiling_per_split, ceiling_table, format_summary, segment_lengths, summarize
from ablation.data.sequences import PAD_LABEL, SequenceBatches, plan_batches, segments
from ablation.data.sources import (
    LIBRIPHONE_CLASSES,
    SCHEMES,
    TIMIT_CLASSES,
    export,
    from_utterances,
    load_dataset,
    load_libriphone,
    load_timit11,
    parse_spec,
)
from ablation.data.windows import (
    WindowBatches,
    Windows,
    check_window,
    frame_bounds,
    gather_prewindowed,
    gather_windows,
)

__all__ = [
    "Corpus",
    "Dataset",
    "Splits",
    "make_splits",
    "split_utterances",
    "load_dataset",
    "load_libriphone",
    "load_timit11",
    "parse_spec",
    "export",
    "from_utterances",
    "SCHEMES",
    "LIBRIPHONE_CLASSES",
    "TIMIT_CLASSES",
    "Windows",
    "WindowBatches",
    "check_window",
    "frame_bounds",
    "gather_windows",
    "gather_prewindowed",
    "SequenceBatches",
    "PAD_LABEL",
    "plan_batches",
    "segments",
    "summarize",
    "format_summary",
    "segment_lengths",
    "ceiling_table",
    "ceiling_per_split",
]
