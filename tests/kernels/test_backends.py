import subprocess
import sys

import pytest
import torch

from moebench.errors import BadInput, EnvironmentProblem
from moebench_kernels import get_backend

FUNCS = ("fused_moe", "topk_softmax", "grouped_topk_sigmoid", "topk_then_softmax", "rmsnorm", "fused_add_rmsnorm")


def test_auto_on_cpu_is_the_torch_reference():
    b = get_backend("auto", "cpu")
    assert b.name == "torch" and all(getattr(b, f).__name__ == f + "_ref" for f in FUNCS)


@pytest.mark.usefixtures("interpreter")
def test_triton_on_cpu_runs_the_interpreter():
    b = get_backend("triton", "cpu")
    assert b.name == "triton" and b.fused_moe.__name__ == "fused_moe"
    # a result names it so: its times measure the interpreter (a run recorded plain `triton`)
    assert b.interpreted and b.label == "triton (interpreted)"
    assert get_backend("torch", "cpu").label == "torch"
    w, ids = b.topk_softmax(torch.randn(4, 8), 2)
    assert w.shape == ids.shape == (4, 2)


def test_unknown_backend_suggests_a_name():
    with pytest.raises(BadInput, match="did you mean 'triton'"):
        get_backend("trition", "cpu")


def _run(code: str, **env) -> subprocess.CompletedProcess:
    import os

    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"} | env)


def test_import_is_lazy_and_interpreter_is_switched_on_before_triton_loads():
    code = ("import sys, moebench_kernels as m; assert 'torch' not in sys.modules and 'triton' not in sys.modules;"
            "m.get_backend('triton', 'cpu'); import os; assert os.environ['TRITON_INTERPRET'] == '1'")
    p = _run(code)
    assert p.returncode == 0, p.stderr
    assert "interpreter" in p.stderr and p.stderr.count("slow") == 1  # warned once


def test_triton_imported_in_compiled_mode_is_a_clear_environment_error():
    pytest.importorskip("triton")
    p = _run("import triton, moebench_kernels as m\n"
             "try:\n m.get_backend('triton', 'cpu')\n"
             "except Exception as e:\n print(type(e).__name__, e.code, e)")
    assert p.stdout.startswith(f"{EnvironmentProblem.__name__} 4 ") and "TRITON_INTERPRET=1" in p.stdout
