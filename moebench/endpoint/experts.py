"""SGLang's expert distribution, per load level: `/start_expert_distribution_record` before the level's repeats,
`/stop_…` and `/dump_…` after. SGLang answers each with a sentence and writes the record to a file on its own
host (`expert_distribution_recorder_<time>.pt` in SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR); in its `stat` mode the
file holds `logical_count`, tokens routed per [forward pass, layer, logical expert]. So the load is recorded only
where that folder is readable from here (`deployment.expert_distribution_dir`), and shaped as the in-process
profile's `expert_load` (moebench.profile.summary), passes standing for its steps.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from moebench.endpoint.workload import EndpointSpec

if TYPE_CHECKING:
    import aiohttp

_TIMEOUT_S = 30.0  # a dump gathers every rank's counts before SGLang answers
_FILE_WAIT_S = 2.0
ACTIONS = ("start", "stop", "dump")


def server_root(spec: EndpointSpec) -> str:
    """SGLang's native endpoints live at the server root, beside (not under) /v1."""
    return spec.base_url[:-3] if spec.base_url.endswith("/v1") else spec.base_url


@dataclass
class ExpertRecorder:
    session: "aiohttp.ClientSession"
    root: str
    headers: dict[str, str]
    folder: Path

    async def call(self, action: str) -> Optional[str]:
        """None when the server did it; else why not."""
        return await _post(self.session, f"{self.root}/{action}_expert_distribution_record", self.headers)

    async def start(self) -> Optional[str]:
        return await self.call("start")

    async def finish(self) -> dict[str, Any]:
        """Stop, dump, and read the dump written since: the level's `expert_load` section."""
        before = set(self.folder.glob("*.pt"))
        for action in ("stop", "dump"):
            why = await self.call(action)
            if why:
                return not_available(f"{action}: {why}")
        deadline = time.monotonic() + _FILE_WAIT_S
        while True:
            new = sorted(set(self.folder.glob("*.pt")) - before, key=lambda p: p.stat().st_mtime)
            if new or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        if not new:
            return not_available(f"the dump wrote no file in {self.folder} (the server's "
                                 "SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR? started with --expert-distribution-recorder-mode stat?)")
        return load_of_dump(new[-1])


def not_available(why: str) -> dict[str, Any]:
    return {"available": False, "reason": why}


async def open_recorder(session: "aiohttp.ClientSession", spec: EndpointSpec, headers: dict[str, str],
                        folder: Optional[str]) -> tuple[Optional[ExpertRecorder], Optional[str]]:
    """Probe once (start, then stop): (a recorder, None), or (None, why the load cannot be recorded)."""
    root = server_root(spec)
    rec = ExpertRecorder(session, root, headers, Path(folder) if folder else Path("."))
    why = await rec.call("start")
    if why:
        return None, f"no SGLang expert-distribution endpoints at {root} ({why})"
    why = await rec.call("stop")
    if why:
        return None, f"{root}/stop_expert_distribution_record: {why}"
    if folder is None:
        return None, ("the server has SGLang's expert-distribution endpoints, but its dumps are files on its host: "
                      "set deployment.expert_distribution_dir to its SGLANG_EXPERT_DISTRIBUTION_RECORDER_DIR")
    if not rec.folder.is_dir():
        return None, f"deployment.expert_distribution_dir {folder} is not a folder here"
    return rec, None


def load_of_dump(path: Path) -> dict[str, Any]:
    """The profile's `expert_load` shape from one `stat`-mode dump: tokens per expert per layer summed over the
    recorded forward passes, balancedness mean/max, the most imbalanced layer."""
    import torch

    from moebench.profile.recorder import Step
    from moebench.profile.summary import expert_load

    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
        counts = data["logical_count"]
    except Exception as exc:  # noqa: BLE001 - a dump of another mode or version: say so, never fail the run
        return not_available(f"{path.name}: not a stat-mode dump ({type(exc).__name__}: {exc})")
    if counts.dim() == 2:  # one pass, or a version that sums them
        counts = counts.unsqueeze(0)
    if counts.dim() != 3:
        return not_available(f"{path.name}: logical_count has shape {list(counts.shape)}, not [passes, layers, experts]")
    passes = int((counts.sum(dim=(1, 2)) > 0).sum())  # a circular buffer's unused rows are zeros
    load_LE = counts.sum(dim=0).tolist()
    load = expert_load([{"rank": 0, "load_total": load_LE,
                         "steps": [Step(i, "pass", 0, 0) for i in range(passes)]}])
    if load is None:
        return not_available(f"{path.name}: no token was routed while recording")
    # the server's expert-parallel layout is not visible from here: one pool, no ranks
    load.pop("ep_shards", None)
    for row in [*load["layers"], load["most_imbalanced_layer"]]:
        for k in ("tokens_per_ep_rank", "ep_balancedness", "hottest_expert_ranks"):
            row.pop(k, None)
    return {"available": True, "source": f"SGLang expert distribution dump {path.name}",
            **load, "note": "tokens summed over the level's forward passes (prefill and decode, warm-up excluded); "
                            "balancedness = mean / max; n_steps = forward passes that routed tokens"}


async def _post(session: "aiohttp.ClientSession", url: str, headers: dict[str, str]) -> Optional[str]:
    import aiohttp

    try:
        async with asyncio.timeout(_TIMEOUT_S):
            async with session.post(url, headers=headers) as resp:
                await resp.read()
                return None if resp.status == 200 else f"HTTP {resp.status}"
    except TimeoutError:
        return f"no answer in {_TIMEOUT_S:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
