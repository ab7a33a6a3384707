"""Kernel tests run Triton's interpreter on CPU: TRITON_INTERPRET must be set before anything imports triton."""

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402

from moebench_kernels._jit import triton_imported_without_interpreter  # noqa: E402


@pytest.fixture
def interpreter():
    """Skip (with the reason) where Triton cannot run interpreted in this process."""
    pytest.importorskip("triton")
    if triton_imported_without_interpreter():
        pytest.skip("triton was imported in compiled mode before TRITON_INTERPRET=1 was set")
