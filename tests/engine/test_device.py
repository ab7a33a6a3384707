from moebench.engine.device import cpu_oversubscription


def test_oversubscription_by_threads_names_the_thread_count_moebench_would_set():
    msg = cpu_oversubscription(4, 2, 2)
    assert "4 ranks x 2 threads on 2 cores" in msg and "OMP_NUM_THREADS=1 is what moebench sets" in msg
    assert "OMP_NUM_THREADS=4" in cpu_oversubscription(2, 8, 8)


def test_more_ranks_than_cores_is_said_without_blaming_threads():
    msg = cpu_oversubscription(4, 1, 2)
    assert "4 single-thread ranks share 2 cores" in msg and "OMP_NUM_THREADS" not in msg


def test_no_line_when_the_threads_fit_or_the_cores_are_unknown():
    assert cpu_oversubscription(4, 1, 4) is None
    assert cpu_oversubscription(2, 4, 8) is None
    assert cpu_oversubscription(2, 1, None) is None


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


def test_local_ranks_from_the_launchers_own_words(monkeypatch):
    from moebench.engine.device import local_ranks

    for k in ("LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE", "SLURM_JOB_ID"):
        monkeypatch.delenv(k, raising=False)
    assert local_ranks(4) == 4  # our own launcher or torchrun on one host without saying: all here
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    assert local_ranks(8) is None  # srun over nodes, per-node count unknown: no claim
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "2(x4)")
    assert local_ranks(8) == 2
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "3")
    assert local_ranks(8) == 3
