"""Measuring an OpenAI-compatible serving endpoint (vLLM, SGLang, TensorRT-LLM, transformers serve) from the client:
load generation, SSE stream accounting, per-level statistics and tokenomics, written as ordinary result documents.

Importing this package imports neither torch nor aiohttp; `run_endpoint_workload` (moebench.endpoint.runner) does the
work."""
