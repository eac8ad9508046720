"""Corpora, their sources, and the batches models read.

- ``corpus``: ``Corpus`` / ``Dataset`` and the deterministic train/val split;
- ``sources``: ``load_dataset("synthphone:small" | "libriphone:PATH" | "timit11:PATH")``
  and ``export`` to the libriphone layout;
- ``windows``: n-frame context windows gathered per batch (``WindowBatches``);
- ``sequences``: padded, length-bucketed utterances or chunks (``SequenceBatches``);
- ``info``: summary statistics (``summarize``).
"""

import importlib

# each public name and the module that defines it: imported on first use, so that importing one light
# module of the package (a data spec check, the ceiling cache) does not import torch (``windows``,
# ``sequences``) or pandas (``info``) with it
_WHERE = {
    "corpus": ("Corpus", "Dataset", "Splits", "make_splits", "split_utterances"),
    "info": ("ceiling_per_split", "ceiling_table", "format_summary", "segment_lengths", "summarize"),
    "sequences": ("PAD_LABEL", "SequenceBatches", "plan_batches", "segments"),
    "sources": ("LIBRIPHONE_CLASSES", "SCHEMES", "TIMIT_CLASSES", "export", "from_utterances", "load_dataset",
                "load_libriphone", "load_timit11", "parse_spec"),
    "windows": ("WindowBatches", "Windows", "check_window", "frame_bounds", "gather_prewindowed", "gather_windows"),
}
_MODULE_OF = {name: module for module, names in _WHERE.items() for name in names}


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'ablation.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ablation.data.{_MODULE_OF[name]}"), name)


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
