"""torch keeps its own OpenMP runtime when numba's kernels ran first."""

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the runtimes clash by soname on Linux only")

#: A fresh process (the libraries a process has loaded cannot be unloaded): one of WALS's
#: parallel kernels runs, which starts numba's OpenMP layer; torch comes after, as in the demo.
SCRIPT = textwrap.dedent("""
    import numpy as np, scipy.sparse as sp
    from recengine.models.kernels import solve_cholesky
    import numba
    rng = np.random.default_rng(0)
    matrix = sp.random(50, 30, density=0.2, format="csr", random_state=0, dtype=np.float32)
    factors = rng.normal(size=(30, 4)).astype(np.float32)
    rows = np.zeros((50, 4), dtype=np.float32)
    solve_cholesky(matrix.indptr, matrix.indices, matrix.data, np.ones_like(matrix.data),
                   factors, factors.T @ factors, np.full(50, 0.1, dtype=np.float32), rows, 1.0)
    print("layer", numba.threading_layer())
    import torch
    torch.ones(10).sum()
    for line in open("/proc/self/maps"):
        if "libgomp" in line:
            print(line.split()[-1])
""")


def test_torch_uses_the_runtime_it_ships_after_numba_kernels_ran() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout
    if "layer omp" not in out:
        pytest.skip(f"numba chose another threading layer: {out.splitlines()[0]}")
    loaded = set(out.splitlines()[1:])
    assert any(path.endswith("torch/lib/libgomp.so.1") for path in loaded), loaded
