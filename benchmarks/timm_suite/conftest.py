"""Run timm's model tests on this project's registered models only."""
import os
import sys

import torch

torch.set_num_threads(1)
sys.path.insert(0, os.environ["NAS_ROOT"])
import timm  # noqa: E402

import nas.models  # noqa: E402,F401  (registers the project's models)

OURS = set(timm.list_models(module=["nb201", "mbv2", "nb101", "darts"]))


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        name = getattr(item, "callspec", None) and item.callspec.params.get("model_name")
        (keep if name is not None and name.split(".")[0] in OURS else drop).append(item)
    config.hook.pytest_deselected(items=drop)
    items[:] = keep
