"""Catalog configs for the projection tests, built without torch."""

from __future__ import annotations

import pytest

from moebench.projection import resolve_config


@pytest.fixture(scope="session")
def cfgs():
    names = ("llama3:70b", "mixtral:8x7b", "deepseek-v3:671b", "gpt-oss:120b", "qwen3-moe:30b-a3b", "mixtral:debug")
    return {n: resolve_config(n) for n in names}
