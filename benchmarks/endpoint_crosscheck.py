"""Cross-check moebench's endpoint numbers against a peer client, GuideLLM: the same server, the same prompts in the
same order, the same concurrency, measured by each tool in turn; median TTFT, TPOT and output tokens/s side by side.

    python benchmarks/endpoint_crosscheck.py                         # transformers serve: ~10 min on 2 shared cores
    python benchmarks/endpoint_crosscheck.py --server guidellm-mock --pairs 3               # GuideLLM's mock: ~6 min

--server transformers: `transformers serve` on 127.0.0.1 (CPU, one request at a time) over a random-weight Llama
(hidden 256, 4 layers: a few hundred ms per request, so that client overheads of a few ms stay small beside TTFT
and the request time) with the word-level tokenizer of tests/endpoint/tiny_model.py; its eos is disabled, so
every answer is exactly max_tokens long. --server guidellm-mock: GuideLLM's own mock server, whose TTFT and gap
between tokens are set (sleeps, so far steadier than a model on a shared CPU) and which serves requests side by
side. The dataset is one local JSONL that both tools read unshuffled: prompts of --prompt-words words of that
tokenizer's vocabulary (one token each), and --output-tokens per answer. Both tools count tokens from the server's
usage chunk (`stream_options.include_usage`). For each concurrency the tools run --pairs times each, alternating
which goes first, so that the drift of a shared machine falls on both; each tool's medians pool all its requests.

Like with like (GuideLLM's names differ from ours, MEASURE.md "Serving endpoints"):
  TTFT          ours: request sent -> first content chunk      GuideLLM time_to_first_token_ms (same)
  TPOT          ours: (E2E - TTFT) / (output tokens - 1)        GuideLLM inter_token_latency_ms: (last content
                                                                chunk - first) / (output tokens - 1)
  output tok/s  ours: output tokens / the level's wall time     GuideLLM output_tokens_per_second, its mean
                                                                (output tokens / the benchmark's duration)
GuideLLM's time_per_output_token_ms divides the whole latency, TTFT included, by all output tokens: it is set
beside our E2E / output tokens, not beside our TPOT.

GuideLLM is a cross-check tool, not a moebench dependency. guidellm 0.8.1 pins click~=8.4 and an older multidict
than moebench's venv holds (typer's and aiohttp's), so install it into a venv of its own that sees the shared one
underneath (pip then leaves the shared venv untouched):
    python -m venv --without-pip .venv/peer
    python -c 'import site; print(site.getsitepackages()[0])' > .venv/peer/lib/python3.11/site-packages/zz_base.pth
    .venv/peer/bin/python -m pip install guidellm==0.8.1
Every run is bounded (--requests per run, --run-timeout-s per tool process); the server is killed at the end.
Exit codes: 0 all within --tolerance, 1 a metric outside it, 4 a tool or the server missing or failing.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from moebench.errors import EnvironmentProblem, MoebenchError  # noqa: E402
from moebench.results import write_atomic, write_text_atomic  # noqa: E402
from tests.endpoint import tiny_model  # noqa: E402  (the tokenizer the real-server tests use)

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
SERVER_START_S = 180
METRICS = ("ttft_ms", "tpot_ms", "output_tokens_per_s")
TOOLS = ("moebench", "guidellm")


def build_model(folder: Path, hidden: int, layers: int) -> Path:
    """The tiny model's tokenizer and config, widened and deepened so a request takes a few hundred ms."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tiny_model.build(folder)
    cfg = LlamaConfig.from_pretrained(folder)
    cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers = hidden, 3 * hidden, layers
    cfg.num_attention_heads, cfg.num_key_value_heads, cfg.max_position_embeddings = 8, 4, 4096
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = None  # random weights: exactly max_tokens come out
    model.save_pretrained(folder)
    return folder


def write_dataset(path: Path, n: int, prompt_words: int, output_tokens: int, seed: int = 0) -> Path:
    """JSONL both tools read: `prompt` is GuideLLM's text column and moebench's prompt; `output_tokens` is read by
    moebench only (GuideLLM gets the same number as its backend max_tokens: its own output-length column would
    make it send `ignore_eos`, which transformers serve rejects with a 422)."""
    words = sorted({w for s in tiny_model.SENTENCES for w in s.split()})
    rng = random.Random(seed)
    lines = [json.dumps({"prompt": " ".join(rng.choice(words) for _ in range(prompt_words)),
                         "output_tokens": output_tokens}) for _ in range(n)]
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def server(cmd: list[str], env: dict[str, str], port: int, log: Path) -> Iterator[str]:
    """Start `cmd` (a server on 127.0.0.1:`port`) in a session of its own, wait for /health, yield the API root;
    at the end its whole process group is stopped (servers fork workers and trackers)."""
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, env={**os.environ, **env},
                                start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EnvironmentProblem(f"{Path(cmd[0]).name} {cmd[1]} did not start: {_tail(log)}")
            time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen) -> None:
    for sig, wait_s in ((signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait_s)
            return
        except subprocess.TimeoutExpired:
            continue


def transformers_serve(model: Path, threads: int, log: Path):
    """`transformers serve` on CPU. torch gets `threads` intra-op threads: on a shared 2-core machine its default
    spins against the other users and per-token times swing tenfold."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        raise EnvironmentProblem("no `transformers` command (pip install 'transformers[serving]')")
    port = _free_port()
    return server([exe, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu",
                   "--log-level", "warning"], {**OFFLINE_ENV, "OMP_NUM_THREADS": str(threads)}, port, log)


def guidellm_mock(exe: str, ttft_ms: float, itl_ms: float, output_tokens: int, log: Path):
    """GuideLLM's own mock server: it sleeps ttft_ms, then streams output_tokens one per chunk itl_ms apart, and
    serves requests concurrently; a server whose true TTFT, TPOT and tokens/s are known."""
    port = _free_port()
    return server([exe, "mock-server", "--host", "127.0.0.1", "--port", str(port), "--model", "mock",
                   "--ttft-ms", str(ttft_ms), "--itl-ms", str(itl_ms), "--output-tokens", str(output_tokens)],
                  OFFLINE_ENV, port, log)


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/health", timeout=2) as resp:
            return resp.status == 200
    except OSError:
        return False


def _tail(log: Path) -> str:
    return " ".join(log.read_text(errors="replace")[-400:].split())


def warm_up(base_url: str, model: str, n: int) -> None:
    """A few requests before anything is timed: the first ones pay for lazy initialisation in the server."""
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "the quick brown fox"}],
                       "max_tokens": 8, "stream": False}).encode()
    for _ in range(n):
        req = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as resp:
            resp.read()


def run_moebench(base_url: str, model: str, data: Path, concurrency: int, n: int, output_tokens: int, work: Path,
                 timeout_s: float) -> dict[str, Any]:
    """`moebench run` over a workload reading `data`, as a user runs it; per-request samples from its result."""
    wl = work / "workload.yaml"
    wl.write_text(
        f"kind: endpoint\nname: crosscheck-c{concurrency}\n"
        f"endpoint: {{base_url: \"{base_url}\", model: \"{model}\", api: chat}}\n"
        f"dataset: {{kind: jsonl, path: \"{data}\", output_tokens: {output_tokens}, shuffle: false}}\n"
        f"load: {{concurrency: [{concurrency}], requests_per_level: {n}, max_duration_s: {timeout_s:g}}}\n"
        "timing: {warmup_requests: 0, repeats: 1}\ntelemetry_interval_s: null\n")
    out = work / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "kernels")])}
    rc = _bounded([sys.executable, "-m", "moebench", "run", str(wl), "--out", str(out)], env, timeout_s + 60,
                  work / "moebench.log")
    if rc != 0:
        raise EnvironmentProblem(f"moebench run exited {rc}: {_tail(work / 'moebench.log')}")
    [rec] = json.loads(next(out.glob("*.json")).read_text())["records"]
    m, q = rec["metrics"], rec["requests"]
    [wall] = q["wall_s"]
    return {"ok": q["ok"], "failed": q["failed"], "prompt_tokens": rec["prompt_tokens"],
            "output_tokens": rec["output_tokens"], "token_source": q["output_token_source"],
            "ttft_ms": m["ttft_ms"]["samples"], "tpot_ms": m["tpot_ms"]["samples"],
            "e2e_ms": m["e2e_ms"]["samples"], "wall_s": wall,
            "output_tokens_total": m["output_tokens_per_s"]["median"] * wall}


def run_guidellm(exe: str, base_url: str, model: str, data: Path, concurrency: int, n: int, output_tokens: int,
                 work: Path, timeout_s: float) -> dict[str, Any]:
    """`guidellm run` over the same file; per-request samples from its per-request timings with its own
    definitions, and the medians it reports itself (`reported`, to check the recomputation against)."""
    out = work / "guidellm.json"
    cmd = [exe, "run",
           "--backend", json.dumps({"kind": "openai_http", "target": base_url.removesuffix("/v1"), "model": model,
                                    "request_format": "/v1/chat/completions", "max_tokens": output_tokens}),
           "--profile", json.dumps({"kind": "concurrent", "streams": concurrency}),
           "--constraint", json.dumps({"kind": "max_requests", "count": n}),
           "--constraint", json.dumps({"kind": "max_duration", "seconds": timeout_s}),
           "--data", json.dumps({"kind": "json_file", "path": str(data)}),
           "--output", json.dumps({"kind": "json", "path": str(out)}),
           "--disable-console-interactive"]
    rc = _bounded(cmd, {**os.environ, **OFFLINE_ENV}, timeout_s + 120, work / "guidellm.log")
    if rc != 0 or not out.exists():
        raise EnvironmentProblem(f"guidellm exited {rc}: {_tail(work / 'guidellm.log')}")
    [bench] = json.loads(out.read_text())["benchmarks"]
    reqs, m = bench["requests"]["successful"], bench["metrics"]
    t = [r["info"]["timings"] for r in reqs]
    k = [r["output_metrics"]["total_tokens"] for r in reqs]
    return {"ok": len(reqs), "failed": len(bench["requests"]["errored"]),
            "prompt_tokens": statistics.median(r["input_metrics"]["total_tokens"] for r in reqs),
            "output_tokens": statistics.median(k),
            "ttft_ms": [(x["first_token_iteration"] - x["request_start"]) * 1e3 for x in t],
            "tpot_ms": [(x["last_token_iteration"] - x["first_token_iteration"]) * 1e3 / (n_ - 1)
                        for x, n_ in zip(t, k) if n_ > 1],
            "tpot_to_e2e_ms": [(x["request_end"] - x["first_token_iteration"]) * 1e3 / (n_ - 1)
                               for x, n_ in zip(t, k) if n_ > 1],
            "e2e_ms": [(x["request_end"] - x["request_start"]) * 1e3 for x in t],
            "wall_s": bench["duration"], "output_tokens_total": sum(k),
            "reported": {"ttft_ms": m["time_to_first_token_ms"]["successful"]["median"],
                         "tpot_ms": m["inter_token_latency_ms"]["successful"]["median"],
                         "time_per_output_token_ms": m["time_per_output_token_ms"]["successful"]["median"],
                         "output_tokens_per_s": m["output_tokens_per_second"]["successful"]["mean"]}}


def _bounded(cmd: list[str], env: dict[str, str], timeout_s: float, log: Path) -> int:
    with open(log, "w") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return 124


def per_run(r: dict[str, Any]) -> dict[str, float]:
    """One run's figures: median TTFT and TPOT over its requests, output tokens over its wall time."""
    return {"ttft_ms": statistics.median(r["ttft_ms"]), "tpot_ms": statistics.median(r["tpot_ms"]),
            "output_tokens_per_s": r["output_tokens_total"] / r["wall_s"]}


def compare(runs: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Per metric and tool: the median over every request of every run (tokens/s: all output tokens over all the
    runs' wall time), its ratio GuideLLM/moebench, and the ratios of the runs paired back to back (there the
    machine's drift cancels best) with each tool's own run-to-run range beside them: the noise floor."""
    out: dict[str, Any] = {}
    for key in METRICS:
        pooled = {}
        for tool in TOOLS:
            rs = [r[tool] for r in runs]
            pooled[tool] = (sum(r["output_tokens_total"] for r in rs) / sum(r["wall_s"] for r in rs)
                            if key == "output_tokens_per_s" else statistics.median(x for r in rs for x in r[key]))
        each = {tool: [per_run(r[tool])[key] for r in runs] for tool in TOOLS}
        paired = [g / m for m, g in zip(each["moebench"], each["guidellm"])]
        ratio = pooled["guidellm"] / pooled["moebench"]
        out[key] = {**pooled, "runs": each, "ratio": ratio, "paired_ratios": paired,
                    "within_tolerance": abs(ratio - 1) <= tolerance}
    return out


NAMES = {"ttft_ms": ("TTFT ms", "time_to_first_token", ".1f"), "tpot_ms": ("TPOT ms", "inter_token_latency", ".2f"),
         "output_tokens_per_s": ("output tok/s", "output_tokens_per_second", ".1f")}


def table(levels: dict[int, dict[str, Any]], extra: dict[int, dict[str, float]], truth: dict[int, dict[str, float]],
          tolerance: float) -> str:
    lines = []
    for c, cmp in levels.items():
        n = len(cmp["ttft_ms"]["paired_ratios"])
        lines += [f"concurrency {c}, {n} runs of each tool: median over all their requests (range of the run "
                  "medians)", "",
                  f"| metric (GuideLLM's name) | moebench | GuideLLM | ratio G/m | paired run ratios | within "
                  f"{tolerance:.0%} |" + (" mock's setting |" if truth else ""),
                  "|---|---|---|---|---|---|" + ("---|" if truth else "")]
        for key, (name, theirs, f) in NAMES.items():
            v = cmp[key]
            rng = {t: f"{min(v['runs'][t]):{f}}–{max(v['runs'][t]):{f}}" for t in TOOLS}
            lines.append(f"| {name} ({theirs}) | {v['moebench']:{f}} ({rng['moebench']}) | {v['guidellm']:{f}} "
                         f"({rng['guidellm']}) | {v['ratio']:.3f} | {min(v['paired_ratios']):.2f}–"
                         f"{max(v['paired_ratios']):.2f} | {'yes' if v['within_tolerance'] else 'NO'} |"
                         + (f" {truth[c][key]:{f}} |" if truth else ""))
        e = extra[c]
        lines += ["", f"Definitions set side by side: GuideLLM's timings with our TPOT (to the end of the stream) "
                  f"{e['guidellm_tpot_to_e2e_ms']:.2f} ms; GuideLLM's time_per_output_token (TTFT included) "
                  f"{e['guidellm_time_per_output_token_ms']:.2f} ms vs our E2E / output tokens "
                  f"{e['moebench_e2e_per_output_token_ms']:.2f} ms. GuideLLM's own reported medians, median over "
                  f"runs: TTFT {e['guidellm_reported_ttft_ms']:.1f} ms, ITL {e['guidellm_reported_tpot_ms']:.2f} "
                  f"ms, output tok/s {e['guidellm_reported_output_tokens_per_s']:.1f}.", ""]
    return "\n".join(lines)


def extras(runs: list[dict[str, Any]]) -> dict[str, float]:
    g = [r["guidellm"] for r in runs]
    m = [r["moebench"] for r in runs]
    return {"guidellm_tpot_to_e2e_ms": statistics.median(x for r in g for x in r["tpot_to_e2e_ms"]),
            "guidellm_time_per_output_token_ms": statistics.median(r["reported"]["time_per_output_token_ms"]
                                                                   for r in g),
            "moebench_e2e_per_output_token_ms": statistics.median(x / r["output_tokens"] for r in m
                                                                  for x in r["e2e_ms"]),
            **{f"guidellm_reported_{k}": statistics.median(r["reported"][k] for r in g) for k in METRICS}}


def measure(args, exe: str) -> dict[int, list[dict[str, Any]]]:
    """Per concurrency, `pairs` runs of each tool, alternating which goes first; returns their numbers."""
    results: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="moebench-crosscheck-") as tmp:
        work = Path(tmp)
        folder = work / "model"
        if args.server == "transformers":
            model = str(build_model(folder, args.hidden, args.layers))
            srv = transformers_serve(folder, args.server_threads, work / "serve.log")
        else:
            model = "mock"
            srv = guidellm_mock(exe, args.mock_ttft_ms, args.mock_itl_ms, args.output_tokens, work / "serve.log")
        data = write_dataset(work / "prompts.jsonl", args.requests, args.prompt_words, args.output_tokens)
        with srv as base_url:
            warm_up(base_url, model, 3)
            for c in args.concurrency:
                results[c] = []
                for i in range(args.pairs):
                    run: dict[str, Any] = {}
                    for tool in TOOLS[:: 1 if i % 2 == 0 else -1]:
                        d = work / f"c{c}-{i}-{tool}"
                        d.mkdir()
                        t0 = time.monotonic()
                        common = (base_url, model, data, c, args.requests, args.output_tokens, d, args.run_timeout_s)
                        r = run[tool] = run_moebench(*common) if tool == "moebench" else run_guidellm(exe, *common)
                        f = per_run(r)
                        print(f"  c{c} run {i + 1} {tool:8s}: {r['ok']} ok {r['failed']} failed, tokens in/out "
                              f"{r['prompt_tokens']:g}/{r['output_tokens']:g}; TTFT {f['ttft_ms']:.1f} ms, TPOT "
                              f"{f['tpot_ms']:.2f} ms, {f['output_tokens_per_s']:.1f} output tok/s "
                              f"({time.monotonic() - t0:.0f} s incl. start-up)", file=sys.stderr, flush=True)
                    results[c].append(run)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guidellm", default=None, help="the guidellm command (default: .venv/peer/bin/guidellm, "
                    "then next to this Python, then PATH)")
    ap.add_argument("--server", choices=["transformers", "guidellm-mock"], default="transformers")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=40, help="per run")
    ap.add_argument("--pairs", type=int, default=4, help="runs of each tool per concurrency")
    ap.add_argument("--prompt-words", type=int, default=256)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256, help="transformers: the model's width")
    ap.add_argument("--layers", type=int, default=4, help="transformers: the model's depth")
    ap.add_argument("--server-threads", type=int, default=1, help="transformers: torch threads")
    ap.add_argument("--mock-ttft-ms", type=float, default=80.0, help="guidellm-mock: its TTFT")
    ap.add_argument("--mock-itl-ms", type=float, default=4.0, help="guidellm-mock: its gap between tokens")
    ap.add_argument("--run-timeout-s", type=float, default=180.0, help="bound of each tool's run")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "runs" / "endpoint-crosscheck")
    args = ap.parse_args()
    candidates = [args.guidellm] if args.guidellm else [str(ROOT / ".venv/peer/bin/guidellm"),
                                                          str(Path(sys.executable).parent / "guidellm"), "guidellm"]
    exe = next((w for w in map(shutil.which, candidates) if w), None)
    try:
        if exe is None:
            raise EnvironmentProblem("no guidellm command: see this script's docstring for how to install it "
                                     "(--guidellm PATH)")
        load0 = os.getloadavg()[0]
        print(f"load average before: {load0:.2f} on {os.cpu_count()} cores; guidellm: {exe}", file=sys.stderr)
        results = measure(args, exe)
    except MoebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.code)
    levels = {c: compare(runs, args.tolerance) for c, runs in results.items()}
    extra = {c: extras(runs) for c, runs in results.items()}
    # what the mock is set to: TTFT, then a token every itl, requests served side by side (tokens/s scale with c);
    # a floor, not the truth: its sleeps overshoot on a loaded machine, and both tools then see the same overshoot
    truth = {c: {"ttft_ms": args.mock_ttft_ms, "tpot_ms": args.mock_itl_ms,
                 "output_tokens_per_s": c * args.output_tokens * 1e3 / (
                     args.mock_ttft_ms + (args.output_tokens - 1) * args.mock_itl_ms)}
             for c in results} if args.server == "guidellm-mock" else {}
    load1 = os.getloadavg()[0]
    head = (f"server {args.server}, {args.requests} requests per run, prompts {args.prompt_words} words, "
            f"{args.output_tokens} output tokens; load average {load0:.1f} before, {load1:.1f} after, on "
            f"{os.cpu_count()} cores\n\n")
    text = head + table(levels, extra, truth, args.tolerance)
    print(text)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    write_atomic(args.out / f"{stamp}-crosscheck-{args.server}.json",
                 {"args": {k: str(v) for k, v in vars(args).items()}, "guidellm": exe, "runs": results,
                  "comparison": levels, "extra": extra, "truth": truth})
    write_text_atomic(args.out / f"{stamp}-crosscheck-{args.server}.md", text + "\n")
    print(f"written: {args.out}/{stamp}-crosscheck-{args.server}.{{json,md}}", file=sys.stderr)
    return 0 if all(v["within_tolerance"] for cmp in levels.values() for v in cmp.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
