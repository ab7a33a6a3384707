def test_the_compute_roof_is_the_higher_of_the_matmul_probe_and_the_fma_peak():
    from moebench.engine.device import compute_roof_flops

    assert compute_roof_flops({"matmul_gflops": 86.0, "fma_peak_gflops": 200.0}) == 200e9
    assert compute_roof_flops({"matmul_gflops": 700e3}) == 700e12  # a GPU: no FMA probe
    assert compute_roof_flops({"matmul_gflops": 180.0, "fma_peak_gflops": 150.0}) == 180e9

def test_cpu_roofs_carry_the_fma_peak():
    import torch

    from moebench.engine.device import measure_roofs

    r = measure_roofs("cpu", torch.float32, scale=0.05)
    assert r["fma_peak_gflops"] > 0 and r["matmul_gflops"] > 0 and r["basis"] == "measured"
    assert r["matmul_dtype"] == "float32" and r["matmul_probe"].startswith("fp32 ")


def test_a_bf16_run_on_cpu_is_judged_against_a_bf16_matmul():
    """An fp32 probe is no ceiling for a bf16 run (bf16 dot products run it twice as fast): MFU read 249 %."""
    import torch

    from moebench.engine.device import measure_roofs

    r = measure_roofs("cpu", torch.bfloat16, scale=0.05)
    assert r["matmul_dtype"] == "bfloat16" and r["matmul_probe"].startswith("bf16 ") and r["matmul_gflops"] > 0
    assert "fma_peak_gflops" not in r  # the register peak is fp32's
