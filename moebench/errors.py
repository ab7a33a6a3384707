"""Exit codes and the error hierarchy: one place, so every command fails the same way."""

from __future__ import annotations

import enum


class ExitCode(enum.IntEnum):
    OK = 0
    REGRESSION = 1
    USAGE = 2
    BAD_INPUT = 3
    ENVIRONMENT = 4
    RUN_FAILED = 5
    INTERNAL = 70
    INTERRUPTED = 130


class MoebenchError(Exception):
    """An anticipated failure: the CLI prints its message as one line and exits with `code`."""

    code: ExitCode = ExitCode.INTERNAL

    def __init__(self, message: str, *, code: ExitCode | None = None):
        super().__init__(message)
        if code is not None:
            self.code = code


class BadInput(MoebenchError):
    """A workload, model name, results file or argument the user gave is wrong."""

    code = ExitCode.BAD_INPUT


class EnvironmentProblem(MoebenchError):
    """The machine lacks something the run needs (a GPU, NCCL, Triton)."""

    code = ExitCode.ENVIRONMENT


class RunFailed(MoebenchError):
    """The run started but could not finish; partial results were saved where `partial_path` says."""

    code = ExitCode.RUN_FAILED

    def __init__(self, message: str, *, partial_path: str | None = None):
        super().__init__(message)
        self.partial_path = partial_path


class Regression(MoebenchError):
    """The regression gate found a significant slowdown."""

    code = ExitCode.REGRESSION


class Terminated(KeyboardInterrupt):
    """SIGTERM, what Slurm, Kubernetes and CI send to stop a job: handled as Ctrl-C is (partial results saved and
    named, exit 130), so it derives from KeyboardInterrupt and every Ctrl-C handler catches it too."""

    how = "SIGTERM"
