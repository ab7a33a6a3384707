"""Distributed runs on torch.distributed: NCCL on GPU, gloo on CPU, one code path for both.

- `mesh`: process groups and the data × expert × tensor DeviceMesh, from the launcher's environment.
- `comm`: every collective moebench issues, named for the profiler and watched for timeouts.
- `expert`: expert parallelism (experts sharded over EP ranks, all-to-all dispatch and combine).
- `tensor`: tensor parallelism for attention heads and dense MLPs (column/row split, all-reduce).
- `plan`: applies both to a single-device model from outside, and slices the batch per rank.
- `gather`: rank 0 merges every rank's timings into one result.
- `faults`: a dead or hung rank becomes exit 5 with one line naming it, never a hang.
- `launch`: `moebench run --nproc N` through torch's elastic launcher.

Usage notes (single node, multi-node, Slurm): docs/distributed.md.
"""
