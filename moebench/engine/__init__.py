"""Run a model workload: build each model, prefill + KV-cache decode per batch size, time it honestly."""
