"""fidkit.integrations.ignite: the metrics as ignite Metrics on an Engine, under 2 gloo processes, and the
example examples/ignite_gan_eval.py with short settings.

The DDP worker (a subprocess spawning 2 processes, as in test_torchmetrics.py) runs each metric through
``reset`` / ``update`` / ``compute`` on every rank — uneven shards with different batch sizes, a rank
with no images, a rank with one image — and the same batches in rank order in one process without
torch.distributed. FID must agree to 1e-12 relative, the row metrics (KID, IS, PR, DC) exactly up to
float64 rounding (they see the same rows in the same order). About 35 s of CPU on 2 cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime

pytestmark = pytest.mark.torch

ROOT = Path(__file__).resolve().parents[2]

WORKER = r'''
import json, os, socket, sys, warnings
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import fidkit
from fidkit.integrations import ignite as fi

warnings.simplefilter("ignore")
torch.set_num_threads(1)  # one thread everywhere: the ranks' and the single process's features are bitwise equal
OUT = sys.argv[1]
SCENARIOS = {
    "uneven":    [[5, 32], [40, 23]],
    "empty":     [[], [50, 30]],
    "one_image": [[1], [40, 39]],
}


class Pixels(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x):
        return x.reshape(x.shape[0], -1) * self.scale


def images():
    x, _ = fidkit.load_mnist()
    rng = np.random.default_rng(14)
    fake = np.clip(x[400:600] * 0.7 + rng.uniform(0, 80, size=(200, 28, 28)), 0, 255).astype(np.uint8)
    return torch.from_numpy(x[:200]).unsqueeze(1), torch.from_numpy(fake).unsqueeze(1)


def batches(s, rank):
    start = sum(sum(b) for b in SCENARIOS[s][:rank])
    out = []
    for b in SCENARIOS[s][rank]:
        out.append((start, start + b))
        start += b
    return out


def run_metrics(real, fake, bs):
    px = fidkit.from_torch(Pixels(), "", name="pixels-test", input_size=(28, 28), channels=1, policy="mnist")
    ms = {"fid": fi.FID("mnist"), "fid_ref": fi.FID("mnist", reference=os.path.join(OUT, "ref.npz")),
          "is": fi.InceptionScore("mnist", splits=2, output_transform=lambda o: o[0]),
          "kid": fi.KID(px, subsets=10, subset_size=20), "pr": fi.PrecisionRecall(px),
          "dc": fi.DensityCoverage(px, k=3)}
    for m in ms.values():
        m.reset()
    for lo, hi in bs:
        for key, m in ms.items():
            m.update(fake[lo:hi] if key == "fid_ref" else (fake[lo:hi], real[lo:hi]))
    out = {k: m.compute() for k, m in ms.items()}
    out["n"] = [ms["fid"].result().n_fake, ms["fid"].result().n_real]
    return out


def worker(rank, world, port):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    warnings.simplefilter("ignore")
    real, fake = images()
    res = {s: run_metrics(real, fake, batches(s, rank)) for s in SCENARIOS}
    with open(os.path.join(OUT, f"rank{rank}.json"), "w") as fh:
        json.dump(res, fh)
    dist.destroy_process_group()


if __name__ == "__main__":
    real, fake = images()
    ex = fidkit.extractor("mnist", runtime="torch")
    fidkit.Stats.from_features(ex.features(real[:150]), fidkit.Provenance.from_extractor(ex)).save(
        os.path.join(OUT, "ref.npz"))
    single = {s: run_metrics(real, fake, batches(s, 0) + batches(s, 1)) for s in SCENARIOS}
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    mp.spawn(worker, args=(2, port), nprocs=2, join=True)
    ranks = [json.load(open(os.path.join(OUT, f"rank{r}.json"))) for r in range(2)]
    print(json.dumps({"ranks": ranks, "single": single}))
'''


@pytest.fixture(scope="module")
def ignite_mod():
    require_runtime("torch")
    pytest.importorskip("ignite")
    import fidkit.integrations.ignite as fi

    return fi


@pytest.fixture(scope="module")
def ddp(ignite_mod, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("ddp_ignite")
    script = out / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ("uneven", "empty", "one_image"))
def test_ddp_equals_single_process(ddp: dict, scenario: str) -> None:
    single = ddp["single"][scenario]
    for rank in ddp["ranks"]:
        got = rank[scenario]
        assert got["n"] == single["n"]
        for key in ("fid", "fid_ref"):
            assert abs(got[key] - single[key]) <= 1e-12 * abs(single[key]), (key, got[key], single[key])
        for key in ("is", "kid"):
            assert got[key] == pytest.approx(single[key], rel=1e-12, abs=1e-12), key
        for key in ("pr", "dc"):
            assert got[key] == single[key], key
    assert ddp["ranks"][0][scenario] == ddp["ranks"][1][scenario]


@pytest.fixture(scope="module")
def digits():
    import torch

    import fidkit

    x, _ = fidkit.load_mnist()
    real = torch.from_numpy(x[:256]).unsqueeze(1)
    fake = torch.from_numpy(x[256:512]).unsqueeze(1).float() / 127.5 - 1.0
    return real, fake * 0.9


def test_attached_to_an_engine_with_output_transform(ignite_mod, digits) -> None:
    import ignite.metrics
    from ignite.engine import Engine

    import fidkit

    fi = ignite_mod
    real, fake = digits
    ex = fidkit.extractor("mnist", runtime="torch")
    ref = fidkit.Stats.from_features(ex.features(real), fidkit.Provenance.from_extractor(ex))
    batches = [{"fake": fake[lo:lo + 64], "step": lo} for lo in range(0, 256, 64)]
    evaluator = Engine(lambda engine, batch: batch)
    pick = lambda out: out["fake"]  # noqa: E731
    fid = fi.FID("mnist", reference=ref, value_range=(-1, 1), output_transform=pick)
    isc = fi.InceptionScore("mnist", splits=4, value_range=(-1, 1), output_transform=pick)
    pr = fi.PrecisionRecall("mnist", reference=ex.features(real), value_range=(-1, 1), output_transform=pick)
    assert isinstance(fid, ignite.metrics.Metric)
    for name, m in (("fid", fid), ("is", isc), ("pr", pr)):
        m.attach(evaluator, name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        state = evaluator.run(batches, max_epochs=1)
        first = dict(state.metrics)
        evaluator.run(batches, max_epochs=1)              # the next epoch starts from a reset state
    feats = np.concatenate([ex.outputs(b["fake"], value_range=(-1, 1))["features"] for b in batches])
    logits = np.concatenate([ex.outputs(b["fake"], value_range=(-1, 1))["logits"] for b in batches])
    s = fidkit.Stats.from_features(feats)
    assert first["fid"] == pytest.approx(fidkit.frechet_distance(ref.mean, ref.cov, s.mean, s.cov), rel=1e-12)
    assert first["is"] == pytest.approx(fidkit.inception_score(logits, 4)[0], rel=1e-12)
    assert first["pr"] == fidkit.precision_recall(ex.features(real).astype(np.float64), feats)._asdict()
    assert state.metrics["fid"] == first["fid"] and fid.result().n_fake == 256
    assert fid.result().provenance.extractor == "mnist" and isc.result().std is not None


def test_pairs_without_reference_and_errors(ignite_mod, digits) -> None:
    import fidkit

    fi = ignite_mod
    real, fake = digits
    fid = fi.FID("mnist")
    with pytest.raises(fidkit.InputError, match=r"\(fake, real\) image pairs"):
        fid.update(real)
    fid.update((real[:128], real[128:]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        assert fid.compute() > 0
    bad = fi.FID("mnist", value_range=(0, 1), reference=fid.stats(real=True))
    with pytest.raises(fidkit.InputError, match="-1"):
        bad.update(fake)


@pytest.mark.slow
def test_example_runs_under_two_minutes(tmp_path: Path) -> None:
    require_runtime("torch")
    pytest.importorskip("ignite")
    t = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "ignite_gan_eval.py"), "--epochs", "1",
                           "--train-images", "2000", "--reference-images", "1000", "--eval-samples", "500"],
                          capture_output=True, text=True, timeout=180, check=False, cwd=tmp_path)
    wall = time.perf_counter() - t
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "epoch 1: FID" in proc.stdout and "extractor mnist, resize policy mnist" in proc.stdout
    assert wall < 120, wall
