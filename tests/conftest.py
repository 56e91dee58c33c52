import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)


import pytest  # noqa: E402

from diffskip.adapters import base as _adapters  # noqa: E402


@pytest.fixture(autouse=True)
def _adapter_registry():
    """Leave the global adapter registry as each test found it (a safety net under adapters.registered())."""
    before = dict(_adapters._REGISTRY)
    yield
    _adapters._REGISTRY.clear()
    _adapters._REGISTRY.update(before)
