import json

import pytest
import torch

from moebench.bench.runner import layer_cost, render_table, run_kernel_workload
from moebench.workload import parse_workload


@pytest.fixture(scope="module")
def result():
    wl = parse_workload({
        "kind": "kernel", "name": "tiny", "shape": {"experts": 6, "top_k": 2, "hidden": 32, "ffn": 16,
                                                     "transformers_block": "mixtral"},
        "tokens": [1, 5], "providers": ["torch-ref", "torch-grouped", "torch-loop", "transformers-eager", "triton"],
        "timing": {"warmup": 0, "repeats": 3}})
    return run_kernel_workload(wl, device="cpu", console_err=lambda m: None, roof_scale=0.01)


def test_points_carry_the_documented_fields(result):
    assert result["kind"] == "kernel" and result["hardware"]["label"].startswith("CPU")
    assert {"mem_gbps", "matmul_tflops", "basis"} <= set(result["hardware"]["measured_roofs"])
    ok = [p for p in result["points"] if p["status"] == "ok"]
    assert len(ok) == 2 * 4  # triton is skipped on CPU, with its reason
    for p in ok:
        assert p["check"]["passed"] and p["check"]["rel_err"] < 1e-4
        t = p["time_us"]
        assert t["n"] == 3 and t["p20"] <= t["median"] <= t["p80"] and t["unit"] == "us"
        assert p["gbps"]["median"] > 0 and p["tflops"]["median"] > 0 and 0 < p["pct_roof_measured"]
        assert p["pct_roof_catalog"] is None  # a CPU has no catalog peak: no claim against one
        assert set(p["vs"]) == {q for q in ("torch-ref", "torch-grouped", "torch-loop", "transformers-eager")
                                if q != p["provider"]}
        assert p["experts_touched"] <= min(6, 2 * p["tokens"])
    skipped = [p for p in result["points"] if p["status"] != "ok"]
    assert {p["provider"] for p in skipped} == {"triton"} and "CUDA" in skipped[0]["reason"]
    json.dumps(result)  # JSON-able as the results writer needs


def test_each_cpu_point_carries_its_own_roofs_and_pct_roof_uses_them(result):
    from moebench.bench.runner import _floor_s

    start = result["hardware"]["measured_roofs"]
    for p in (p for p in result["points"] if p["status"] == "ok"):
        r = p["point_roofs"]
        assert r["basis"] == "measured" and r["mem_gbps"] > 0 and r["matmul_tflops"] > 0
        assert r["rounds"] == 3  # one probe round per repeat round of the providers
        lo, hi = r["mem_gbps_p20_p80"]
        assert lo <= r["mem_gbps"] <= hi
        floor = _floor_s(p["bytes"], p["flops"], r["mem_gbps"] * 1e9, r["matmul_tflops"] * 1e12)
        assert p["pct_roof_measured"] == pytest.approx(100 * floor / (p["time_ms"]["median"] / 1e3))
        floor0 = _floor_s(p["bytes"], p["flops"], start["mem_gbps"] * 1e9, start["matmul_tflops"] * 1e12)
        assert p["pct_roof_start"] == pytest.approx(100 * floor0 / (p["time_ms"]["median"] / 1e3))
        if "fma_peak_tflops" in r:  # the C kernels built: the FMA-peak reading is the stricter (or equal) one
            assert r["fma_peak_tflops"] > 0 and p["pct_roof_fma_peak"] <= p["pct_roof_measured"] + 1e-9
    by_T = {p["tokens"]: p["point_roofs"] for p in result["points"] if p["status"] == "ok"}
    assert len(by_T) == 2 and all(p["point_roofs"] is by_T[p["tokens"]] for p in result["points"])


def test_bytes_count_the_touched_experts_only():
    nbytes, flops = layer_cost(T=1, K=2, D=4, F=3, experts_touched=2, elem_bytes=4, bias=False)
    assert nbytes == 2 * 3 * 4 * 3 * 4 + 2 * 1 * 4 * 4 and flops == 2 * 3 * 4 * 3 * 2


def test_table_renders(result):
    from rich.console import Console

    console = Console(record=True, width=250)
    console.print(render_table(result))
    text = console.export_text()
    assert "CPU" in text and "torch-ref" in text and "skipped" in text
    assert "% start roof" in text and "measured within each T" in " ".join(text.split())


def test_a_layer_that_does_not_fit_is_bad_input_at_validate_and_run(tmp_path):
    """As a model too big for the machine is (exit 3); `run` said exit 4 and `validate` said ok."""
    import yaml

    from moebench.errors import BadInput
    from tests.cli.conftest import assert_one_line_error, moebench

    huge = {"kind": "kernel", "name": "huge", "shape": {"experts": 1024, "top_k": 8, "hidden": 16384, "ffn": 16384},
            "tokens": [1], "providers": ["torch-ref"], "dtype": "float32", "device": "cpu"}
    with pytest.raises(BadInput, match="more than 80%"):
        run_kernel_workload(parse_workload(huge), device="cpu", console_err=lambda m: None)
    p = tmp_path / "huge.yaml"
    p.write_text(yaml.safe_dump(huge))
    assert_one_line_error(moebench("validate", str(p)), 3, "huge: the layer's weights take", "more than 80%")


def test_fma_peak_is_a_ceiling_for_blas():
    """The register-FMA peak is the compute ceiling: a BLAS matmul measured beside it cannot beat it by much
    (its chains were merged into one by the compiler once, and it then read 12x too high)."""
    from moebench.bench.cpu_peak import fma_peak_tflops
    from moebench.bench.timing import time_cpu

    from moebench.machine import CONTENDED_SHARE, OthersCpu

    with OthersCpu() as load:
        peak = fma_peak_tflops(1)
        if peak is None:
            pytest.skip("no C kernels here (AVX2/FMA or a compiler missing)")
        with torch.inference_mode():
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                n = 768
                a, b = torch.randn(n, n), torch.randn(n, n)
                mm = 2 * n**3 / (min(time_cpu(lambda: a @ b, 2, 5)) / 1e3) / 1e12
            finally:
                torch.set_num_threads(threads)
    busy = load.cores is None or load.cores > CONTENDED_SHARE
    if mm <= 0.4 * peak and busy:  # two timings taken apart: other processes can split them
        pytest.skip(f"machine busy: other processes used {'an unknown number of' if load.cores is None else f'{load.cores:.2f}'} cores while BLAS ran at {mm / peak:.2f}× peak")
    assert mm > 0.4 * peak, (mm, peak)  # a peak far above what BLAS reaches counts FMAs that did not run
    with open("/proc/cpuinfo") as f:
        avx512 = " avx512f" in f.read()
    if not avx512:  # with AVX-512 BLAS may outrun this AVX2 probe (the runner takes the better of the two)
        assert mm < 1.15 * peak, (mm, peak)


def test_cpu_turns_rotate_so_no_provider_always_follows_the_probe():
    from types import SimpleNamespace

    from moebench.bench.runner import _time_row

    calls: list[str] = []
    row = [{"provider": n, "_run": (lambda n=n: calls.append(n))} for n in "abc"]
    row.append({"provider": "skipped-one"})  # no _run: not timed
    wl = SimpleNamespace(timing=SimpleNamespace(warmup=1, repeats=4))
    assert _time_row(row, wl, None) is None  # no probe, no roofs
    assert calls == list("abc") + list("abc") + list("bca") + list("cab") + list("abc")
    assert all(p["time_ms"]["n"] == 4 for p in row[:3]) and "time_ms" not in row[3]
    assert _time_row([{"provider": "x"}], wl, None) is None  # nothing to time: no error


def test_a_stopped_run_saves_the_points_measured_and_names_the_file(tmp_path):
    """SIGTERM (what the CLI's handler raises) once T=1 was measured: T=1's points saved, marked incomplete as a
    model workload marks them, and the one-line error names the file."""
    from moebench.errors import ExitCode, MoebenchError, Terminated
    from moebench.results import load_result

    wl = parse_workload({
        "kind": "kernel", "name": "stopped", "shape": {"experts": 4, "top_k": 2, "hidden": 16, "ffn": 8},
        "tokens": [1, 2, 4], "providers": ["torch-ref", "torch-grouped"], "timing": {"warmup": 0, "repeats": 2}})

    def stop_at_t2(line: str) -> None:
        if "T=2 " in line:
            raise Terminated("stopped by SIGTERM")

    path = tmp_path / "out" / "run.json"
    path.parent.mkdir()
    with pytest.raises(MoebenchError) as err:
        run_kernel_workload(wl, device="cpu", console_err=stop_at_t2, roof_scale=0.01, partial_path=path)
    assert err.value.code == ExitCode.INTERRUPTED
    assert str(err.value) == f"interrupted by SIGTERM; partial results in {path}"
    assert [p.name for p in path.parent.iterdir()] == ["run.json"]  # atomic: no temporary file left beside it
    doc = load_result(path)
    assert doc["complete"] is False and doc["error"] == "interrupted (SIGTERM)" and doc["wall_s"] > 0
    assert [(p["tokens"], p["provider"]) for p in doc["points"]] == [(1, "torch-ref"), (1, "torch-grouped")]
    assert all(p["status"] == "ok" and p["time_us"]["n"] == 2 for p in doc["points"])

    with pytest.raises(Terminated):  # no place given: nothing is written, the interrupt goes on up
        run_kernel_workload(wl, device="cpu", console_err=stop_at_t2, roof_scale=0.01)


def _tiny(**over):
    return parse_workload({
        "kind": "kernel", "name": "tiny2", "shape": {"experts": 4, "top_k": 2, "hidden": 16, "ffn": 8},
        "tokens": [1], "providers": ["torch-ref", "torch-grouped", "torch-loop"],
        "timing": {"warmup": 0, "repeats": 2}, **over})


def test_a_provider_that_raises_fails_its_row_and_the_others_run(monkeypatch):
    """One provider's exception ended the whole run with exit 70 and no points."""
    import moebench.bench.runner as runner

    real = runner.make_runner

    def make_runner(prov, *a):
        if prov == "torch-loop":
            raise RuntimeError("boom in provider\nsecond line")
        return real(prov, *a)

    monkeypatch.setattr(runner, "make_runner", make_runner)
    doc = run_kernel_workload(_tiny(), device="cpu", console_err=lambda m: None, roof_scale=0.01)
    by = {p["provider"]: p for p in doc["points"]}
    assert by["torch-loop"]["status"] == "failed" and by["torch-loop"]["reason"] == "RuntimeError: boom in provider"
    assert by["torch-ref"]["status"] == by["torch-grouped"]["status"] == "ok" and doc["complete"] is True


def test_an_interrupt_before_any_point_says_nothing_was_saved(tmp_path):
    from moebench.errors import ExitCode, MoebenchError, Terminated

    def stop_at_allocation(line: str) -> None:
        if "allocating" in line:  # after the roofs, before any point
            raise Terminated("stopped by SIGTERM")

    path = tmp_path / "run.json"
    with pytest.raises(MoebenchError) as err:
        run_kernel_workload(_tiny(), device="cpu", console_err=stop_at_allocation, roof_scale=0.01, partial_path=path)
    assert err.value.code == ExitCode.INTERRUPTED and not path.exists()
    assert str(err.value) == "interrupted by SIGTERM before anything was measured; nothing saved"


def test_gpu_hardware_on_a_cpu_kernel_run_is_bad_input():
    from moebench.errors import BadInput

    with pytest.raises(BadInput, match="h100_sxm is a GPU but the kernels run on cpu"):
        run_kernel_workload(_tiny(hardware="h100_sxm"), device="cpu", console_err=lambda m: None, roof_scale=0.01)


def test_a_bf16_kernel_run_on_cpu_is_judged_against_bf16_roofs():
    doc = run_kernel_workload(_tiny(dtype="bfloat16", providers=["torch-ref"]), device="cpu",
                              console_err=lambda m: None, roof_scale=0.01)
    assert doc["hardware"]["measured_roofs"]["matmul_dtype"] == "bfloat16"
    assert all(p["point_roofs"]["matmul_dtype"] == "bfloat16" and "pct_roof_fma_peak" not in p for p in doc["points"])


def test_the_table_renders_with_catalog_bandwidth_but_no_peak_for_the_dtype(result):
    """A GPU catalogued without an fp32 peak (H100, B200, MI300X) crashed the table: exit 70 after the save."""
    doc = json.loads(json.dumps(result))
    doc["hardware"].update(catalog_hbm_tbps=3.35, catalog_peak_tflops=None)
    render_table(doc)
