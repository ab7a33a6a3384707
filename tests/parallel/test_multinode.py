"""Two "nodes" on one machine: two network namespaces joined by a veth pair, one external `torchrun` in each
(c10d rendezvous over the veth addresses, gloo over the veth interface), EP=4 over 2 × 2 ranks; rank 0 writes
one merged result covering all 4 ranks."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid

import pytest

from tests.parallel.helpers import leftover_pids

pytestmark = pytest.mark.slow

NET = "10.77.0"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


@pytest.fixture
def two_nodes():
    """[(namespace, interface, address)] × 2, removed afterwards whatever happens."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("network namespaces need the `ip` command (iproute2), which is not installed")
    tag = uuid.uuid4().hex[:6]
    nodes = [(f"mb-{tag}-a", f"mb{tag}a", f"{NET}.1"), (f"mb-{tag}-b", f"mb{tag}b", f"{NET}.2")]
    try:
        made = _ip("netns", "add", nodes[0][0])
        if made.returncode:
            pytest.skip(f"cannot create network namespaces here: {made.stderr.strip()}")
        steps = [
            ("netns", "add", nodes[1][0]),
            ("link", "add", nodes[0][1], "netns", nodes[0][0], "type", "veth", "peer", "name", nodes[1][1], "netns", nodes[1][0]),
        ]
        for ns, ifname, addr in nodes:
            steps += [("-n", ns, "addr", "add", f"{addr}/24", "dev", ifname), ("-n", ns, "link", "set", ifname, "up"),
                      ("-n", ns, "link", "set", "lo", "up")]
        for s in steps:
            r = _ip(*s)
            if r.returncode:
                pytest.skip(f"cannot set up the veth pair (ip {' '.join(s)}): {r.stderr.strip()}")
        yield nodes
    finally:
        for ns, _, _ in nodes:
            _ip("netns", "del", ns)


def test_two_nodes_torchrun_ep4_writes_one_merged_result(two_nodes, repo, tmp_path):
    marker = f"moebench-multinode-{uuid.uuid4().hex}"
    out = tmp_path / "out"
    rdzv_id = uuid.uuid4().hex[:8]
    procs = []
    try:
        for i, (ns, ifname, addr) in enumerate(two_nodes):
            env = {**os.environ, "GLOO_SOCKET_IFNAME": ifname, "OMP_NUM_THREADS": "1", "MOEBENCH_TEST_MARKER": marker}
            # The veth addresses are not this machine's hostname: say which node hosts the rendezvous store
            # (is_host) and which address each agent advertises to the other node's ranks (--local-addr).
            cmd = ["ip", "netns", "exec", ns, sys.executable, "-m", "torch.distributed.run",
                   "--nnodes", "2", "--nproc-per-node", "2", "--rdzv-backend", "c10d",
                   "--rdzv-endpoint", f"{NET}.1:29477", "--rdzv-id", rdzv_id, "--rdzv-conf", f"is_host={int(i == 0)}",
                   "--local-addr", addr,
                   "-m", "moebench", "run", "workloads/moe-ep4.yaml", "--out", str(out), "--repeats", "1", "--json"]
            procs.append(subprocess.Popen(cmd, cwd=repo, env=env, stdout=tmp_path.joinpath(f"{i}.out").open("w"),
                                          stderr=tmp_path.joinpath(f"{i}.err").open("w"), text=True))
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and any(p.poll() is None for p in procs):
            if any(p.poll() not in (None, 0) for p in procs):
                break  # one node failed: do not wait for the other's rendezvous timeout
            time.sleep(0.5)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
    outputs = [(tmp_path.joinpath(f"{i}.out").read_text(), tmp_path.joinpath(f"{i}.err").read_text()) for i in range(2)]
    for p, (_, err) in zip(procs, outputs):
        assert p.returncode == 0, err[-3000:]
    docs = [json.loads(o) for o, _ in outputs if o.strip()]
    assert len(docs) == 1, "exactly one rank (rank 0) prints the result"
    files = list(out.glob("*.json"))
    assert len(files) == 1, files
    doc = json.loads(files[0].read_text())
    assert doc["complete"] is True and doc["world_size"] == 4
    assert [r["rank"] for r in doc["ranks"]] == [0, 1, 2, 3]
    assert sorted(r["mesh"]["expert"] for r in doc["ranks"]) == [0, 1, 2, 3]
    assert all(len(r["timings"]) == len(doc["records"]) == 2 for r in doc["ranks"])
    assert doc["records"][0]["cost"]["n_gpus"] == 4
    assert doc == docs[0]
    assert leftover_pids(marker) == []
