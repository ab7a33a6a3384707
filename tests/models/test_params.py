"""Total and active parameters of every catalogued flavor are within 3% of the published figures, and the built
module holds exactly the parameters the config counts."""

from __future__ import annotations

import pytest
import torch

import moebench.models as M
from moebench.catalog import reference_models

REFS = reference_models()


def test_all_eleven_flavors_are_registered():
    assert len(REFS) == 11
    names = set(M.all_names())
    assert set(REFS) <= names


@pytest.mark.parametrize("name", sorted(REFS))
def test_params_within_3_percent_of_published(name):
    _, cfg = M.resolve_name(name)
    pub = REFS[name].published_params
    assert cfg.total_params() == pytest.approx(pub["published_total"], rel=0.03)
    if "published_active" in pub:
        assert cfg.active_params() == pytest.approx(pub["published_active"], rel=0.03)
    else:  # dense: every parameter is active (gpt-oss-style embedding exclusion applies to gpt-oss only)
        assert cfg.active_params() == cfg.total_params()


@pytest.mark.parametrize("family", ["llama3", "mixtral", "qwen3-moe", "deepseek-v3", "gpt-oss"])
def test_module_holds_what_the_config_counts(family):
    """Parameters plus persistent buffers (DeepSeek's e_score_correction_bias is a checkpoint tensor too)."""
    spec, cfg = M.resolve_name(f"{family}:debug")
    model = M.materialize(spec, cfg, device="meta", dtype=torch.float32)
    assert sum(t.numel() for t in model.state_dict().values()) == cfg.total_params()
