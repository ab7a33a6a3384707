"""Cross-check moebench's endpoint numbers against a peer client, GuideLLM: the same server, the same prompts in the
same order, the same concurrency, measured by each tool in turn; median TTFT, TPOT and output tokens/s side by side.

    python benchmarks/endpoint_crosscheck.py --guidellm .venv/peer/bin/guidellm      # ~6 min on 2 shared cores

The server is `transformers serve` on 127.0.0.1 (CPU, one request at a time) over a random-weight Llama (hidden
256, 4 layers: a few hundred ms per request, so that client overheads of a few ms stay small beside TTFT and the
request time) with the word-level tokenizer of tests/endpoint/tiny_model.py; its eos is disabled, so every answer
is exactly max_tokens long. The dataset is one local JSONL that both tools read unshuffled: prompts of
--prompt-words words of that tokenizer's vocabulary (one token each), and --output-tokens per answer. Both tools
count tokens from the server's usage chunk (`stream_options.include_usage`). For each concurrency the tools run
--pairs times each, alternating which goes first, so that the drift of a shared machine falls on both.

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
def serve(model: Path, threads: int, log: Path) -> Iterator[str]:
    """`transformers serve` on 127.0.0.1; yields the API root. torch gets `threads` intra-op threads: on a shared
    2-core machine its default spins against the other users and per-token times swing tenfold."""
    exe = shutil.which("transformers", path=str(Path(sys.executable).parent)) or shutil.which("transformers")
    if exe is None:
        raise EnvironmentProblem("no `transformers` command (pip install 'transformers[serving]')")
    port = _free_port()
    env = {**os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": str(threads)}
    with open(log, "w") as f:
        proc = subprocess.Popen([exe, "serve", str(model), "--host", "127.0.0.1", "--port", str(port), "--device",
                                 "cpu", "--log-level", "warning"], stdout=f, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + SERVER_START_S
        while not _healthy(base):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise EnvironmentProblem(f"transformers serve did not start: {_tail(log)}")
            time.sleep(0.5)
        yield f"{base}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


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
    """`moebench run` over a workload reading `data`, as a user runs it; its medians from the result document."""
    wl = work / "workload.yaml"
    wl.write_text(
        f"kind: endpoint\nname: crosscheck-c{concurrency}\n"
        f"endpoint: {{base_url: \"{base_url}\", model: \"{model}\", api: chat}}\n"
        f"dataset: {{kind: jsonl, path: \"{data}\", output_tokens: {output_tokens}, shuffle: false}}\n"
        f"load: {{concurrency: [{concurrency}], requests_per_level: {n}, max_duration_s: {timeout_s:g}}}\n"
        "timing: {warmup_requests: 0, repeats: 1}\ntelemetry_interval_s: null\n")
    out = work / "out"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "kernels")])}
    proc = _bounded([sys.executable, "-m", "moebench", "run", str(wl), "--out", str(out)], env, timeout_s + 60,
                    work / "moebench.log")
    if proc != 0:
        raise EnvironmentProblem(f"moebench run exited {proc}: {_tail(work / 'moebench.log')}")
    doc = json.loads(next(out.glob("*.json")).read_text())
    [rec] = doc["records"]
    m, q = rec["metrics"], rec["requests"]
    return {"ok": q["ok"], "failed": q["failed"], "output_tokens": rec["output_tokens"],
            "prompt_tokens": rec["prompt_tokens"], "token_source": q["output_token_source"],
            "ttft_ms": m["ttft_ms"]["median"], "tpot_ms": m["tpot_ms"]["median"],
            "output_tokens_per_s": m["output_tokens_per_s"]["median"],
            "e2e_per_output_token_ms": m["e2e_ms"]["median"] / rec["output_tokens"]}


def run_guidellm(exe: str, base_url: str, model: str, data: Path, concurrency: int, n: int, output_tokens: int,
                 work: Path, timeout_s: float) -> dict[str, Any]:
    """`guidellm run` over the same file; the numbers as GuideLLM reports them, and TPOT recomputed from its
    per-request timings with our definition (to E2E, not to the last content chunk)."""
    out = work / "guidellm.json"
    target = base_url.removesuffix("/v1")
    cmd = [exe, "run",
           "--backend", json.dumps({"kind": "openai_http", "target": target, "model": model,
                                    "request_format": "/v1/chat/completions", "max_tokens": output_tokens}),
           "--profile", json.dumps({"kind": "concurrent", "streams": concurrency}),
           "--constraint", json.dumps({"kind": "max_requests", "count": n}),
           "--constraint", json.dumps({"kind": "max_duration", "seconds": timeout_s}),
           "--data", json.dumps({"kind": "json_file", "path": str(data)}),
           "--output", json.dumps({"kind": "json", "path": str(out)}),
           "--disable-console-interactive"]
    proc = _bounded(cmd, {**os.environ, **OFFLINE_ENV}, timeout_s + 120, work / "guidellm.log")
    if proc != 0 or not out.exists():
        raise EnvironmentProblem(f"guidellm exited {proc}: {_tail(work / 'guidellm.log')}")
    [bench] = json.loads(out.read_text())["benchmarks"]
    m = bench["metrics"]
    reqs = bench["requests"]["successful"]

    def med(key: str) -> float:
        return m[key]["successful"]["median"]

    tpot_ours = []
    for r in reqs:
        t, k = r["info"]["timings"], r["output_metrics"]["total_tokens"]
        if k and k > 1:
            tpot_ours.append((t["request_end"] - t["first_token_iteration"]) * 1e3 / (k - 1))
    return {"ok": len(reqs), "failed": len(bench["requests"]["errored"]),
            "output_tokens": statistics.median(r["output_metrics"]["total_tokens"] for r in reqs),
            "prompt_tokens": statistics.median(r["input_metrics"]["total_tokens"] for r in reqs),
            "ttft_ms": med("time_to_first_token_ms"), "tpot_ms": med("inter_token_latency_ms"),
            "output_tokens_per_s": m["output_tokens_per_second"]["successful"]["mean"],
            "tpot_ms_to_e2e": statistics.median(tpot_ours),
            "time_per_output_token_ms": med("time_per_output_token_ms")}


def _bounded(cmd: list[str], env: dict[str, str], timeout_s: float, log: Path) -> int:
    with open(log, "w") as f:
        try:
            return subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, timeout=timeout_s).returncode
        except subprocess.TimeoutExpired:
            return 124


def compare(runs: list[dict[str, Any]], tolerance: float) -> dict[str, Any]:
    """Per metric: each tool's median over its runs, the ratio GuideLLM/moebench of those, and the median of the
    paired ratios (a pair ran back to back, so the machine's drift cancels best there)."""
    out: dict[str, Any] = {}
    for key in METRICS:
        ours = [r["moebench"][key] for r in runs]
        theirs = [r["guidellm"][key] for r in runs]
        paired = [b / a for a, b in zip(ours, theirs)]
        ratio = statistics.median(theirs) / statistics.median(ours)
        out[key] = {"moebench": statistics.median(ours), "guidellm": statistics.median(theirs),
                    "moebench_runs": ours, "guidellm_runs": theirs, "ratio": ratio,
                    "paired_ratio_median": statistics.median(paired), "paired_ratios": paired,
                    "within_tolerance": abs(ratio - 1) <= tolerance}
    return out


def _row(name: str, c: dict[str, Any], fmt: str) -> str:
    def runs(xs: list[float]) -> str:
        return f"{min(xs):{fmt}}–{max(xs):{fmt}}"

    return (f"| {name} | {c['moebench']:{fmt}} ({runs(c['moebench_runs'])}) | {c['guidellm']:{fmt}} "
            f"({runs(c['guidellm_runs'])}) | {c['ratio']:.3f} | {c['paired_ratio_median']:.3f} | "
            f"{'yes' if c['within_tolerance'] else 'NO'} |")


def table(levels: dict[int, dict[str, Any]], extra: dict[int, dict[str, Any]], tolerance: float) -> str:
    lines = []
    for c, cmp in levels.items():
        lines += [f"concurrency {c}: median over runs (min–max of the run medians)", "",
                  f"| metric | moebench | GuideLLM | ratio G/m | paired ratio | within {tolerance:.0%} |",
                  "|---|---|---|---|---|---|",
                  _row("TTFT ms (GuideLLM time_to_first_token)", cmp["ttft_ms"], ".1f"),
                  _row("TPOT ms (GuideLLM inter_token_latency)", cmp["tpot_ms"], ".2f"),
                  _row("output tok/s (GuideLLM output_tokens_per_second mean)", cmp["output_tokens_per_s"], ".1f"),
                  "", f"also: GuideLLM timings with our TPOT definition (to E2E) {extra[c]['tpot_ms_to_e2e']:.2f} ms; "
                  f"GuideLLM time_per_output_token (TTFT included) {extra[c]['time_per_output_token_ms']:.2f} ms "
                  f"vs our E2E / output tokens {extra[c]['e2e_per_output_token_ms']:.2f} ms", ""]
    return "\n".join(lines)


def measure(args, exe: str) -> dict[int, list[dict[str, Any]]]:
    """Per concurrency, `pairs` runs of each tool, alternating which goes first; returns their numbers."""
    results: dict[int, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(prefix="moebench-crosscheck-") as tmp:
        work = Path(tmp)
        model = build_model(work / "model", args.hidden, args.layers)
        data = write_dataset(work / "prompts.jsonl", args.requests, args.prompt_words, args.output_tokens)
        with serve(model, args.server_threads, work / "serve.log") as base_url:
            warm_up(base_url, str(model), 3)
            for c in args.concurrency:
                results[c] = []
                for i in range(args.pairs):
                    run: dict[str, Any] = {}
                    for tool in ("moebench", "guidellm")[:: 1 if i % 2 == 0 else -1]:
                        d = work / f"c{c}-{i}-{tool}"
                        d.mkdir()
                        t0 = time.monotonic()
                        common = (base_url, str(model), data, c, args.requests, args.output_tokens, d,
                                  args.run_timeout_s)
                        r = run[tool] = run_moebench(*common) if tool == "moebench" else run_guidellm(exe, *common)
                        print(f"  c{c} run {i + 1} {tool:8s}: {r['ok']} ok {r['failed']} failed, tokens in/out "
                              f"{r['prompt_tokens']}/{r['output_tokens']}; TTFT {r['ttft_ms']:.1f} ms, TPOT "
                              f"{r['tpot_ms']:.2f} ms, {r['output_tokens_per_s']:.1f} output tok/s "
                              f"({time.monotonic() - t0:.0f} s incl. start-up)", flush=True)
                    results[c].append(run)
    return results


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--guidellm", default=None, help="the guidellm command (default: .venv/peer/bin/guidellm, "
                    "then next to this Python, then PATH)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--requests", type=int, default=24, help="per run")
    ap.add_argument("--pairs", type=int, default=3, help="runs of each tool per concurrency")
    ap.add_argument("--prompt-words", type=int, default=256)
    ap.add_argument("--output-tokens", type=int, default=64)
    ap.add_argument("--hidden", type=int, default=256)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--server-threads", type=int, default=1)
    ap.add_argument("--run-timeout-s", type=float, default=180.0, help="bound of each tool's run")
    ap.add_argument("--tolerance", type=float, default=0.10)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "runs" / "endpoint-crosscheck")
    args = ap.parse_args()
    exe = args.guidellm or next((p for p in (str(ROOT / ".venv/peer/bin/guidellm"),
                                             str(Path(sys.executable).parent / "guidellm"),
                                             shutil.which("guidellm")) if p and Path(p).exists()), None)
    try:
        if exe is None:
            raise EnvironmentProblem("no guidellm command: see this script's docstring for how to install it "
                                     "(--guidellm PATH)")
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores; guidellm: {exe}")
        results = measure(args, exe)
    except MoebenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(exc.code)
    levels = {c: compare(runs, args.tolerance) for c, runs in results.items()}
    extra = {c: {key: statistics.median(r[tool][key] for r in runs) for tool, key in (
        ("guidellm", "tpot_ms_to_e2e"), ("guidellm", "time_per_output_token_ms"),
        ("moebench", "e2e_per_output_token_ms"))} for c, runs in results.items()}
    text = table(levels, extra, args.tolerance)
    print(text)
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    write_atomic(args.out / f"{stamp}-crosscheck.json",
                 {"args": {k: str(v) for k, v in vars(args).items()}, "guidellm": exe, "runs": results,
                  "comparison": levels, "extra": extra})
    write_text_atomic(args.out / f"{stamp}-crosscheck.md", text + "\n")
    print(f"written: {args.out}/{stamp}-crosscheck.{{json,md}}")
    return 0 if all(v["within_tolerance"] for cmp in levels.values() for v in cmp.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
