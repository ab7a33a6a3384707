"""Checkpoint loading: one-line errors a user can act on, and the quantized formats real checkpoints ship in
(DeepSeek's block FP8, gpt-oss's MXFP4 experts) read into the same numbers transformers would compute with."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

import moebench.models as M
from moebench.errors import BadInput, ExitCode
from moebench.models.quant import fp8_block_dequant, mxfp4_dequant
from tests.models.conftest import make_hf, rel_err


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def _rewrite(path, edit):
    """Apply `edit(tensors) -> tensors` to the single-file checkpoint in `path`."""
    f = path / "model.safetensors"
    save_file(edit(load_file(f)), f, metadata={"format": "pt"})


def _load_error(path, **kw) -> str:
    with pytest.raises(BadInput) as exc:
        M.load(str(path), **kw)
    assert exc.value.code == ExitCode.BAD_INPUT
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def test_missing_tensor_is_named(hf_checkpoints, tmp_path):
    path = _copy(hf_checkpoints("llama3")[1], tmp_path / "ck")
    _rewrite(path, lambda t: {k: v for k, v in t.items() if k != "model.layers.1.self_attn.k_proj.weight"})
    assert "no tensor 'model.layers.1.self_attn.k_proj.weight'" in _load_error(path)
    M.load(str(path), layers=1)  # the first layer alone is complete: layers=N reads only what it builds


def test_missing_expert_is_named(hf_checkpoints, tmp_path):
    path = _copy(hf_checkpoints("mixtral")[1], tmp_path / "ck")
    _rewrite(path, lambda t: {k: v for k, v in t.items() if "experts.3.w2" not in k})
    assert "no tensor 'model.layers.0.block_sparse_moe.experts.3.w2.weight'" in _load_error(path)


def test_shape_mismatch_names_both_shapes(hf_checkpoints, tmp_path):
    path = _copy(hf_checkpoints("llama3")[1], tmp_path / "ck")
    _rewrite(path, lambda t: {**t, "model.layers.0.mlp.up_proj.weight": torch.zeros(100, 96)})
    msg = _load_error(path)
    assert "'model.layers.0.mlp.up_proj.weight' has shape [100, 96]" in msg and "expects [160, 96]" in msg


def test_unsupported_dtype_is_named(hf_checkpoints, tmp_path):
    path = _copy(hf_checkpoints("llama3")[1], tmp_path / "ck")
    name = "model.layers.0.self_attn.q_proj.weight"
    _rewrite(path, lambda t: {**t, name: t[name].to(torch.int8)})
    assert f"tensor {name!r} has unsupported dtype I8" in _load_error(path)
    # fp8 without its block scales cannot be dequantized either
    _rewrite(path, lambda t: {**t, name: torch.zeros(96, 96).to(torch.float8_e4m3fn)})
    assert "unsupported dtype F8_E4M3" in _load_error(path)


def test_directory_problems(tmp_path, hf_checkpoints):
    (tmp_path / "empty").mkdir()
    assert "no config.json" in _load_error(tmp_path / "empty")
    bert = _copy(hf_checkpoints("llama3")[1], tmp_path / "bert")
    cfg = json.loads((bert / "config.json").read_text())
    (bert / "config.json").write_text(json.dumps({**cfg, "model_type": "bert"}))
    msg = _load_error(bert)
    assert "model_type 'bert' is not supported" in msg and "deepseek_v3" in msg and "kimi_k2" in msg
    nofiles = _copy(hf_checkpoints("llama3")[1], tmp_path / "nofiles")
    (nofiles / "model.safetensors").unlink()
    assert "no *.safetensors files" in _load_error(nofiles)
    broken = _copy(hf_checkpoints("llama3")[1], tmp_path / "broken")
    (broken / "config.json").write_text("{not json")
    assert "broken JSON" in _load_error(broken)


def test_sharded_checkpoint_reads_the_index(hf_checkpoints):
    _, path = hf_checkpoints("qwen3-moe")
    assert (path / "model.safetensors.index.json").is_file() and len(list(path.glob("*.safetensors"))) > 1
    M.load(str(path))  # parity itself is in test_hf_parity


# ------------------------------------------------------------------------------------- quantized formats


def _fp8_quantize(w: torch.Tensor, block: int) -> tuple[torch.Tensor, torch.Tensor]:
    """DeepSeek's scheme: one fp32 scale per block×block tile, values / scale in float8_e4m3fn (max 448)."""
    o, i = w.shape
    bo, bi = -(-o // block), -(-i // block)
    pad = torch.zeros(bo * block, bi * block)
    pad[:o, :i] = w
    tiles = pad.view(bo, block, bi, block)
    scale = tiles.abs().amax(dim=(1, 3)).clamp(min=1e-12) / 448.0
    q = (tiles / scale[:, None, :, None]).view(bo * block, bi * block)[:o, :i].to(torch.float8_e4m3fn)
    return q, scale


@torch.no_grad()
def test_deepseek_block_fp8_checkpoint(hf_checkpoints, tmp_path):
    hf, src = hf_checkpoints("deepseek-v3")
    ref = copy.deepcopy(hf)
    path = _copy(src, tmp_path / "fp8")
    block = 16  # not dividing 96, 40 or 160: partial edge blocks are exercised
    cfg = json.loads((path / "config.json").read_text())
    cfg["quantization_config"] = {"quant_method": "fp8", "fmt": "e4m3", "weight_block_size": [block, block],
                                  "activation_scheme": "dynamic"}
    (path / "config.json").write_text(json.dumps(cfg))
    tensors = load_file(path / "model.safetensors")
    hf_params = dict(ref.named_parameters())
    for name in list(tensors):
        if tensors[name].ndim != 2 or "norm" in name or "embed" in name or "lm_head" in name or name.endswith("gate.weight"):
            continue
        q, s = _fp8_quantize(tensors[name], block)
        tensors[name], tensors[name + "_scale_inv"] = q, s
        deq = fp8_block_dequant(q, s, (block, block), torch.float32)
        if name in hf_params:
            hf_params[name].copy_(deq)
        else:  # a per-expert tensor: transformers holds them fused as gate_up_proj / down_proj
            layer, j, which = name.split(".")[2], int(name.split(".")[5]), name.split(".")[6]
            experts = ref.model.layers[int(layer)].mlp.experts
            f = experts.down_proj.shape[-1]
            target = {"gate_proj": experts.gate_up_proj[j, :f], "up_proj": experts.gate_up_proj[j, f:],
                      "down_proj": experts.down_proj[j]}[which]
            target.copy_(deq)
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})
    assert any(v.dtype == torch.float8_e4m3fn for v in tensors.values())

    model = M.load(str(path))
    ids = torch.randint(0, 160, (2, 12), generator=torch.Generator().manual_seed(0))
    expected = ref(ids).logits
    assert rel_err(model(ids), expected) <= 1e-4
    assert rel_err(expected, hf(ids).logits) > 1e-3  # the fp8 rounding is real: we matched the dequantized model


@torch.no_grad()
def test_gpt_oss_mxfp4_experts_checkpoint(tmp_path):
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    hf, path = make_hf("gpt-oss-mxfp4", tmp_path / "oss")
    tensors = load_file(path / "model.safetensors")
    g = torch.Generator().manual_seed(0)
    for i, layer in enumerate(hf.model.layers):
        experts = layer.mlp.experts
        for proj in ("gate_up_proj", "down_proj"):
            e, d_in, d_out = getattr(experts, proj).shape  # transformers holds x @ W: [E, in, out]
            blocks = torch.randint(0, 256, (e, d_out, d_in // 32, 16), generator=g, dtype=torch.uint8)
            scales = torch.randint(120, 129, (e, d_out, d_in // 32), generator=g, dtype=torch.uint8)
            # transformers' own dequantizer is the oracle: [E, out, G, B] -> [E, in, out]
            getattr(experts, proj).copy_(convert_moe_packed_tensors(blocks, scales, dtype=torch.float32))
            name = f"model.layers.{i}.mlp.experts.{proj}"
            del tensors[name]
            tensors[name + "_blocks"], tensors[name + "_scales"] = blocks, scales
    save_file(tensors, path / "model.safetensors", metadata={"format": "pt"})

    model = M.load(str(path))
    ids = torch.randint(0, 160, (2, 12), generator=torch.Generator().manual_seed(1))
    assert rel_err(model(ids), hf(ids).logits) <= 1e-4


def test_mxfp4_dequant_matches_transformers():
    from transformers.integrations.mxfp4 import convert_moe_packed_tensors

    g = torch.Generator().manual_seed(2)
    blocks = torch.randint(0, 256, (3, 8, 2, 16), generator=g, dtype=torch.uint8)
    scales = torch.randint(110, 140, (3, 8, 2), generator=g, dtype=torch.uint8)
    ours = mxfp4_dequant(blocks, scales, torch.float32)  # [E, out, in]
    torch.testing.assert_close(ours, convert_moe_packed_tensors(blocks, scales, dtype=torch.float32).transpose(1, 2))
