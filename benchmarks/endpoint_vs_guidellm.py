"""Cross-check against a peer client: the same server, dataset shape and concurrency measured by moebench and by
GuideLLM, alternating, and their medians side by side (goal: TTFT, TPOT and output tok/s within 10%).

    guidellm mock-server --host 127.0.0.1 --port 18767 --model mock --ttft-ms 50 --itl-ms 10 &
    python benchmarks/endpoint_vs_guidellm.py --url http://127.0.0.1:18767 --guidellm GUIDELLM_BIN \
        --tokenizer TOKENIZER_DIR --concurrency 1 4 --rounds 3

Names differ (docs/endpoint.md): GuideLLM's `inter_token_latency_ms` is our TPOT, (E2E − TTFT) / (output − 1);
its `time_per_output_token_ms` divides the whole E2E (TTFT included) and is not compared. Output tok/s is each
tool's run-level rate (GuideLLM: the mean of `output_tokens_per_second`, the figure its console prints).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from moebench.endpoint.runner import run_endpoint_workload  # noqa: E402
from moebench.workload import parse_workload  # noqa: E402


def ours(url: str, c: int, n: int, prompt: int, output: int, out: Path) -> dict[str, float]:
    wl = parse_workload({
        "kind": "endpoint", "name": f"peer-check-c{c}", "endpoint": {"base_url": f"{url}/v1"},
        "dataset": {"kind": "random", "prompt_tokens": prompt, "output_tokens": output},
        "load": {"concurrency": [c], "requests_per_level": n}, "timing": {"warmup_requests": 0, "repeats": 1},
        "telemetry_interval_s": None})
    doc, _ = run_endpoint_workload(wl, out_dir=out)
    m = doc["records"][0]["metrics"]
    return {"ttft_ms": m["ttft_ms"]["median"], "tpot_ms": m["tpot_ms"]["median"],
            "output_tokens_per_s": m["output_tokens_per_s"]["median"]}


RAW_REQUEST_DEADLINE_S = 120.0


def raw_socket(url: str, n: int, prompt: int, output: int) -> dict[str, float]:
    """A third opinion at concurrency 1: a blocking socket, no HTTP library, a timestamp per recv() that holds a
    content chunk (the floor of what any client can see)."""
    import socket
    import time
    from urllib.parse import urlsplit

    u = urlsplit(url)
    body = json.dumps({"model": "mock", "max_tokens": output, "stream": True,
                       "messages": [{"role": "user", "content": " ".join(["hello"] * prompt)}]}).encode()
    req = (f"POST /v1/chat/completions HTTP/1.1\r\nHost: {u.hostname}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    ttft, tpot = [], []
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:  # timeout: each recv() is bounded too
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(n):
            t0 = time.perf_counter()
            deadline = t0 + RAW_REQUEST_DEADLINE_S
            s.sendall(req)
            times: list[float] = []
            buf = b""
            while b"[DONE]" not in buf:
                if time.perf_counter() > deadline:
                    raise SystemExit(f"raw socket: request {i + 1} not done after {RAW_REQUEST_DEADLINE_S:g} s")
                data = s.recv(65536)
                now = time.perf_counter()
                if not data:  # the server closed the connection without [DONE]: the peer cannot be read this way
                    raise SystemExit(f"raw socket: the server closed request {i + 1} without data: [DONE]")
                buf += data
                times += [now] * data.count(b'"content"')
            ttft.append((times[0] - t0) * 1e3)
            tpot.append((times[-1] - times[0]) * 1e3 / (len(times) - 1))
    return {"ttft_ms": statistics.median(ttft), "tpot_ms": statistics.median(tpot), "output_tokens_per_s": float("nan")}


def theirs(exe: str, url: str, tokenizer: str, c: int, n: int, prompt: int, output: int, out: Path) -> dict[str, float]:
    path = out / f"guidellm-c{c}.json"
    cmd = [exe, "run", "--backend", f"kind=openai_http,target={url},request_format=/v1/chat/completions",
           "--profile", f"kind=concurrent,streams={c}",
           "--data", f"kind=synthetic_text,prompt_tokens={prompt},output_tokens={output}",
           "--constraint", f"kind=max_requests,count={n}", "--tokenizer", f"kind=huggingface_auto,model={tokenizer}",
           "--output", f"kind=json,path={path}", "--disable-console"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)
    m = json.loads(path.read_text())["benchmarks"][0]["metrics"]
    return {"ttft_ms": m["time_to_first_token_ms"]["successful"]["median"],
            "tpot_ms": m["inter_token_latency_ms"]["successful"]["median"],
            "output_tokens_per_s": m["output_tokens_per_second"]["successful"]["mean"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--url", required=True, help="server root, without /v1")
    ap.add_argument("--guidellm", required=True, help="the guidellm executable")
    ap.add_argument("--tokenizer", required=True, help="a local tokenizer folder for GuideLLM's synthetic data")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--requests", type=int, default=60)
    ap.add_argument("--prompt-tokens", type=int, default=64)
    ap.add_argument("--output-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3, help="alternating runs of each tool")
    args = ap.parse_args()
    out = Path(tempfile.mkdtemp(prefix="peer-check-"))
    print(f"{'conc':>4} {'metric':<20} {'moebench':>10} {'guidellm':>10} {'ratio':>7} {'raw socket':>11}   "
          f"(medians of {args.rounds} alternating runs each; raw socket at concurrency 1 only)")
    for c in args.concurrency:
        a, b, r = [], [], []
        for _ in range(args.rounds):
            a.append(ours(args.url, c, args.requests, args.prompt_tokens, args.output_tokens, out))
            b.append(theirs(args.guidellm, args.url, args.tokenizer, c, args.requests, args.prompt_tokens,
                            args.output_tokens, out))
            if c == 1:
                r.append(raw_socket(args.url, args.requests, args.prompt_tokens, args.output_tokens))
        for key in ("ttft_ms", "tpot_ms", "output_tokens_per_s"):
            x, y = statistics.median(v[key] for v in a), statistics.median(v[key] for v in b)
            z = f"{statistics.median(v[key] for v in r):>11.2f}" if r and key != "output_tokens_per_s" else f"{'':>11}"
            print(f"{c:>4} {key:<20} {x:>10.2f} {y:>10.2f} {x / y:>7.3f} {z}")


if __name__ == "__main__":
    main()
