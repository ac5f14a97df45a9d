"""Datasets for few-shot TTS: readers for common layouts, speaker splits, episodes, features.

Names are imported on first use (PEP 562), so reading a dataset (``inspect``) does not load torch.
"""

import importlib

_EXPORTS = {
    "metatts.data.utterance": ["Utterance"],
    "metatts.data.readout": ["DatasetError", "DatasetReadout"],
    "metatts.data.detect": ["LAYOUTS", "detect_layout", "read_dataset"],
    "metatts.data.splits": ["Splits", "split_speakers"],
    "metatts.data.episodes": ["Episode", "EpisodeSampler", "text_key"],
    "metatts.data.features": ["FeatureCache", "FeatureSettings", "Features"],
    "metatts.data.batch": ["Batch", "Example", "ExampleDataset", "collate", "load_batch",
                           "speaker_index"],
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    if name not in _MODULE_OF:
        raise AttributeError(f"module 'metatts.data' has no attribute {name!r}")
    return getattr(importlib.import_module(_MODULE_OF[name]), name)
