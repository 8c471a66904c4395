"""Weights: getting the 2015 Inception weights ready, fidkit vs pytorch-fid, on one full-size synthetic file.

Run: ``pytest benchmarks/test_bench_weights.py --benchmark-columns=min,mean,rounds``. Each group times fidkit
and the peer in the same run; compare within a group.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("pytorch_fid")

NAME = "pt_inception-2015-12-05-6726825d.pth"


@pytest.fixture(scope="module")
def pth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A full-size pytorch-fid state dict with seeded values, in a private TORCH_HOME and FIDKIT_HOME."""
    import torch

    root = tmp_path_factory.mktemp("bench_weights")
    table = Path(__file__).parents[1] / "tests" / "weights_keys" / "pytorch-fid.json"
    rng = np.random.default_rng(0)
    state = {k: torch.from_numpy(rng.standard_normal(shape).astype(np.float32))
             for k, shape in json.loads(table.read_text())["keys"].items()}
    path = root / "torch" / "hub" / "checkpoints" / NAME
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    mp = pytest.MonkeyPatch()
    mp.setenv("TORCH_HOME", str(root / "torch"))
    mp.setenv("FIDKIT_HOME", str(root / "fidkit"))
    yield path
    mp.undo()


@pytest.mark.benchmark(group="load: first use (convert / build model)")
def test_fidkit_convert(benchmark, pth: Path) -> None:  # noqa: ANN001  (pytest-benchmark fixture)
    from fidkit.backends.torch.convert import from_state_dict
    from fidkit.weights import save_canonical

    def run() -> str:
        return save_canonical(from_state_dict(str(pth)), pth.parent / "canonical.npz")

    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.benchmark(group="load: first use (convert / build model)")
def test_pytorch_fid_build(benchmark, pth: Path) -> None:  # noqa: ANN001
    from pytorch_fid.inception import fid_inception_v3

    benchmark.pedantic(fid_inception_v3, rounds=3, iterations=1)


@pytest.mark.benchmark(group="load: warm (cached canonical / torch.load)")
def test_fidkit_resolve_warm(benchmark, pth: Path) -> None:  # noqa: ANN001
    import warnings

    from fidkit.errors import FidkitWarning
    from fidkit.weights import load_canonical, resolve_weights

    def run() -> int:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FidkitWarning)  # the synthetic file is unofficial by design
            cw = resolve_weights((NAME,), str(pth))
        return len(load_canonical(cw.path))

    run()
    benchmark.pedantic(run, rounds=3, iterations=1)


@pytest.mark.benchmark(group="load: warm (cached canonical / torch.load)")
def test_torch_load(benchmark, pth: Path) -> None:  # noqa: ANN001
    import torch

    benchmark.pedantic(lambda: torch.load(pth, map_location="cpu", weights_only=True), rounds=3, iterations=1)


@pytest.mark.benchmark(group="digest: canonical content vs file bytes")
def test_canonical_digest(benchmark, pth: Path) -> None:  # noqa: ANN001
    from fidkit.backends.torch.convert import from_state_dict
    from fidkit.weights import canonical_digest

    arrays = from_state_dict(str(pth))
    benchmark.pedantic(canonical_digest, args=(arrays,), rounds=3, iterations=1)


@pytest.mark.benchmark(group="digest: canonical content vs file bytes")
def test_hashlib_file_bytes(benchmark, pth: Path) -> None:  # noqa: ANN001
    data = pth.read_bytes()
    benchmark.pedantic(lambda: hashlib.sha256(data).hexdigest(), rounds=3, iterations=1)
