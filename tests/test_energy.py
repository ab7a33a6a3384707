"""Energy counters: NVML against the real pynvml API (a read on a GPU when one is lent), NVML summed over GPUs and
read per repeat (a fake pynvml), RAPL over a fake powercap tree (wrap-around, unreadable files), rank merging."""

from __future__ import annotations

import inspect
import sys
import time
import types
from pathlib import Path

import pytest

from moebench import energy
from moebench.energy import merge_ranks, open_meter, open_nvml, open_rapl

# What moebench.energy and moebench.machine call, with the parameters they pass.
NVML_CALLS = {
    "nvmlInit": [],
    "nvmlDeviceGetTotalEnergyConsumption": ["handle"],
    "nvmlDeviceGetHandleByPciBusId": ["pciBusId"],
    "nvmlDeviceGetHandleByIndex": ["index"],
    "nvmlDeviceGetComputeRunningProcesses": ["handle"],
    "nvmlDeviceGetGraphicsRunningProcesses": ["handle"],
}


def test_the_real_pynvml_has_the_calls_we_make():
    pynvml = pytest.importorskip("pynvml", reason="nvidia-ml-py is a dependency")
    for name, params in NVML_CALLS.items():
        fn = getattr(pynvml, name)
        assert list(inspect.signature(fn).parameters) == params, name


def _gpu() -> bool:
    try:
        import torch

        return torch.cuda.is_available() and energy.nvml() is not None
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _gpu(), reason="needs a CUDA GPU and its NVML driver")
def test_nvml_reads_the_energy_of_work_on_the_gpu():
    import torch

    meter = open_nvml([torch.cuda.current_device()])
    assert meter is not None, "no total-energy counter on this GPU (pre-Volta?)"
    a_MM = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    before, t0 = meter.read(), time.perf_counter()
    while time.perf_counter() - t0 < 1.0:
        for _ in range(20):
            a_MM = (a_MM @ a_MM).clamp_(-1, 1)
        torch.cuda.synchronize()
    joules, wall = meter.joules(before, meter.read()), time.perf_counter() - t0
    assert 30 * wall < joules < 1500 * wall, (joules, wall)  # a busy data-centre GPU: tens to ~1000 W


class FakeNvml(types.ModuleType):
    """pynvml with GPUs whose counters (mJ) grow at `watts` each, in real time; no PCI lookup (index handles)."""

    def __init__(self, watts: list[float]):
        super().__init__("pynvml")
        self.watts, self.t0 = watts, time.perf_counter()

    def nvmlInit(self):
        pass

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetHandleByPciBusId(self, bus):
        raise RuntimeError("not in this fake")

    def nvmlDeviceGetTotalEnergyConsumption(self, handle):
        return 10**9 + int(self.watts[handle] * (time.perf_counter() - self.t0) * 1e3)

    def nvmlDeviceGetComputeRunningProcesses(self, handle):
        return []

    nvmlDeviceGetGraphicsRunningProcesses = nvmlDeviceGetComputeRunningProcesses


@pytest.fixture
def fake_nvml(monkeypatch):
    fake = FakeNvml([300.0, 100.0])
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_nvml_sums_every_gpu_of_the_run(fake_nvml):
    meter = open_meter("cuda", [0, 1])
    assert meter.source == "nvml" and "GPU 0, 1" in meter.scope
    a = meter.read()
    time.sleep(0.2)
    b = meter.read()
    wall = 0.2
    assert meter.joules(a, b) == pytest.approx(400 * wall, rel=0.3)  # 300 W + 100 W
    assert meter.joules(None, b) is None


def _bench(monkeypatch, meter):
    import torch

    from moebench.engine import generate
    from moebench.engine.generate import GenerationBench, prompt_ids
    from moebench.models import build, entry_arch

    monkeypatch.setattr(generate, "open_meter", lambda device, gpus: meter)
    spec, cfg = entry_arch("llama3:debug", "random", None)
    model = build(spec, cfg, device="cpu", dtype=torch.float32, seed=0)
    bench = GenerationBench(model, prompt_ids(2, 8, cfg.vocab_size, 0, "cpu"), output=4, device="cpu")
    bench.run(1, timed=False)
    return bench


def test_every_timed_repeat_carries_its_own_energy_and_window(fake_nvml, monkeypatch):
    """The engine reads the counters around each timed repeat: J per repeat = (300 + 100) W x its wall time,
    over a window it records."""
    bench = _bench(monkeypatch, open_nvml([0, 1]))
    t0 = time.perf_counter()
    bench.run(3)
    wall = time.perf_counter() - t0
    s = bench.samples
    assert s.energy_source == "nvml" and len(s.energy_j) == len(s.ttft_ms) == len(s.energy_window_s) == 3
    assert sum(s.energy_j) <= 400 * wall * 1.01 and sum(s.energy_window_s) <= wall  # inside the call ...
    for e, w, ttft, tpot in zip(s.energy_j, s.energy_window_s, s.ttft_ms, s.tpot_ms):
        assert e >= 400 * (ttft + 3 * tpot) / 1e3 * 0.95  # ... and around its timed generation
        assert w >= (ttft + 3 * tpot) / 1e3
        assert e == pytest.approx(400 * w, rel=0.2, abs=0.05)


class SteppedMeter:
    """A counter that moves in whole 1 J steps, one every 4th read: what NVML's looks like to a read around a
    repeat of a few ms (it updates every ~10-100 ms)."""

    source, scope = "nvml", "stepped test counter"

    def __init__(self):
        self.reads = 0

    def read(self):
        self.reads += 1
        return (self.reads // 4,)

    def joules(self, before, after):
        return None if before is None or after is None else float(after[0] - before[0])


def test_short_repeats_meter_their_energy_together_and_say_it_is_coarse(monkeypatch):
    import itertools
    import types

    from moebench.engine import generate

    bench = _bench(monkeypatch, SteppedMeter())
    clock = itertools.count(step=0.005)  # each read of the engine's clock 5 ms on: repeats of 5 ms
    monkeypatch.setattr(generate, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    bench.run(4)
    s = bench.samples
    assert s.energy_j == [0.0, 1.0, 0.0, 1.0]  # per repeat: the counter's step, not the repeat
    assert s.energy_window_s == pytest.approx([0.005] * 4)

    from tests.engine.test_records import record_of

    rec = record_of(s, batch=2, prompt=8, output=4)
    jpt = rec["metrics"]["joules_per_token"]
    assert jpt["n"] == 1 and jpt["samples"] == pytest.approx([2.0 / (4 * 2 * (8 + 4))])  # all J / all tokens
    assert "pooled: all 4 repeats" in rec["energy_scope"] and "coarse" in rec["energy_scope"]


def powercap(root: Path, zones: dict[str, tuple[str, int, int]]) -> Path:
    """A fake /sys/class/powercap: {zone dir: (name, energy_uj, max_energy_range_uj)}."""
    for z, (name, uj, top) in zones.items():
        d = root / z
        d.mkdir(parents=True)
        (d / "name").write_text(name + "\n")
        (d / "energy_uj").write_text(f"{uj}\n")
        (d / "max_energy_range_uj").write_text(f"{top}\n")
    return root


TREE = {
    "intel-rapl:0": ("package-0", 1_000_000, 262_143_328_850),
    "intel-rapl:0/intel-rapl:0:0": ("core", 500_000, 262_143_328_850),  # inside the package's count
    "intel-rapl:0/intel-rapl:0:1": ("dram", 200_000, 65_712_999_613),  # outside it
    "intel-rapl:1": ("package-1", 3_000_000, 262_143_328_850),
    "intel-rapl:2": ("psys", 9_000_000, 262_143_328_850),  # the whole platform: contains the packages
    "intel-rapl-mmio:0": ("package-0", 7_000_000, 262_143_328_850),  # the same package through MMIO
}


def _set(root: Path, zone: str, uj: int) -> None:
    (root / zone / "energy_uj").write_text(f"{uj}\n")


def test_rapl_counts_packages_and_dram_once(tmp_path):
    root = powercap(tmp_path, TREE)
    meter = open_rapl(root)
    assert meter.source == "rapl"
    assert [name for name, _, _ in meter.zones] == ["package-0", "dram", "package-1"]
    a = meter.read()
    _set(root, "intel-rapl:0", 1_000_000 + 5_000_000)  # +5 J
    _set(root, "intel-rapl:0/intel-rapl:0:1", 200_000 + 1_000_000)  # +1 J
    _set(root, "intel-rapl:1", 3_000_000 + 2_500_000)  # +2.5 J
    _set(root, "intel-rapl:2", 9_000_000 + 100_000_000)  # psys: not counted
    _set(root, "intel-rapl:0/intel-rapl:0:0", 500_000 + 100_000_000)  # core: not counted
    assert meter.joules(a, meter.read()) == pytest.approx(8.5)


def test_rapl_counter_wrapping_between_reads(tmp_path):
    top = 262_143_328_850
    root = powercap(tmp_path, {"intel-rapl:0": ("package-0", top - 2_000_000, top)})
    meter = open_rapl(root)
    a = meter.read()
    _set(root, "intel-rapl:0", 3_000_000)  # wrapped: 2 J to the top, then 3 J
    assert meter.joules(a, meter.read()) == pytest.approx(5.0)


def test_rapl_unreadable_or_absent_is_not_measured(tmp_path, monkeypatch):
    assert open_rapl(tmp_path / "no-powercap") is None
    assert open_rapl(powercap(tmp_path / "psys-only", {"intel-rapl:0": ("psys", 1, 10**9)})) is None
    root = powercap(tmp_path / "locked", TREE)
    real = Path.read_text

    def root_only(self, *a, **k):  # energy_uj is 0400 root since Linux 5.10 (chmod does not stop root)
        if self.name == "energy_uj" and "intel-rapl:1" in str(self):
            raise PermissionError(13, "Permission denied", str(self))
        return real(self, *a, **k)

    monkeypatch.setattr(Path, "read_text", root_only)
    assert open_rapl(root) is None  # one unreadable package would undercount: none at all


def test_a_counter_failing_mid_run_is_not_a_reading(tmp_path):
    root = powercap(tmp_path, {"intel-rapl:0": ("package-0", 1_000, 10**9)})
    meter = open_rapl(root)
    a = meter.read()
    (root / "intel-rapl:0" / "energy_uj").unlink()
    assert meter.read() is None and meter.joules(a, None) is None


def test_ranks_are_summed_per_repeat_and_a_shared_socket_counted_once():
    nv = [("nvml", "GPU 0", [1.0, 2.0], "h1"), ("nvml", "GPU 1", [3.0, 4.0], "h1")]
    assert merge_ranks(nv)[:2] == ([4.0, 6.0], "nvml")
    rapl = [("rapl", "s", [5.0, 5.0], "h1"), ("rapl", "s", [5.1, 5.1], "h1"), ("rapl", "s", [2.0, 2.0], "h2")]
    assert merge_ranks(rapl)[:2] == ([7.0, 7.0], "rapl")  # h1's socket once, h2's once
    assert merge_ranks([nv[0], ("not measured", None, [], "h2")]) == ([], "not measured", None)
    assert merge_ranks([nv[0], ("nvml", "GPU 0", [1.0], "h2")])[1] == "not measured"  # repeats must pair
