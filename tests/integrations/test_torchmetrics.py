"""fidkit.integrations.torchmetrics: the metrics as torchmetrics.Metric, single process and under DDP.

DDP: a worker script (a subprocess, so that the 2 spawned processes import torch afresh) runs every
metric on 2 gloo processes on the CPU in three shardings of the same images — uneven shards with
different batch sizes per rank, a rank with no images at all, a rank with one image — and, in its main
process, the same metrics on the same batches in rank order without torch.distributed, plus fidkit's
own functions on the features of those batches in float64. It reports JSON; the tests judge it:
FID under DDP equals the single-process FID to 1e-12 relative (the acceptance; measured ~1e-15), and
the row metrics (KID, IS, PR, DC) equal fidkit's functions on the rows in rank order. About 40 s on 2
cores.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import require_runtime

pytestmark = pytest.mark.torch

WORKER = r'''
import json, os, socket, sys, warnings
import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import fidkit
from fidkit.integrations import torchmetrics as ft

warnings.simplefilter("ignore")
torch.set_num_threads(1)  # one thread everywhere: the ranks' and the single process's features are bitwise equal
OUT = sys.argv[1]
# fake and real batch sizes per rank, by scenario: uneven shards, a rank without images, a rank with one
SCENARIOS = {
    "uneven":    {"fake": [[5, 32], [40, 23]], "real": [[30], [17, 33]]},
    "empty":     {"fake": [[], [50, 30]], "real": [[], [40, 30]]},
    "one_image": {"fake": [[1], [40, 39]], "real": [[1], [59]]},
}
KID = {"subsets": 10, "subset_size": 20}


def images():
    x, _ = fidkit.load_mnist()
    rng = np.random.default_rng(14)
    real = x[:400]
    noisy = x[400:800].astype(np.float64) * 0.7 + rng.uniform(0, 80, size=(400, 28, 28))
    fake = np.clip(noisy, 0, 255).astype(np.uint8)
    return torch.from_numpy(real).unsqueeze(1), torch.from_numpy(fake).unsqueeze(1)


def batches(scenario, side, rank):
    """Rank ``rank``'s batches of one side: consecutive slices, rank 0's first."""
    sizes = SCENARIOS[scenario][side]
    start = sum(sum(s) for s in sizes[:rank])
    out = []
    for b in sizes[rank]:
        out.append((start, start + b))
        start += b
    return out


class Pixels(torch.nn.Module):
    """The 28x28 pixels as 784-d features: elementwise, so the features do not depend on the batching."""

    def __init__(self):
        super().__init__()
        self.register_buffer("scale", torch.ones(()))

    def forward(self, x):
        return x.reshape(x.shape[0], -1) * self.scale


def pixels():
    """A user model through fidkit.from_torch."""
    return fidkit.from_torch(Pixels(), "", name="pixels-test", input_size=(28, 28), channels=1,
                             policy="mnist")


def run_metrics(real, fake, real_b, fake_b, ref_path, pixel_fake_b):
    """The metrics on these batches: FID and IS through the MNIST network, the row metrics and a second
    FID through the pixel model (cheap, so the workers stay short)."""
    px = pixels()
    ms = {
        "fid": ft.FrechetInceptionDistance("mnist"),
        "fid_ref": ft.FrechetInceptionDistance("mnist", reference=ref_path),
        "is": ft.InceptionScore("mnist", splits=2),
        "kid": ft.KernelInceptionDistance(px, **KID),
        "pr": ft.PrecisionRecall(px),
        "dc": ft.DensityCoverage(px, k=3),
        "fid_pixels": ft.FrechetInceptionDistance(px),
    }
    for lo, hi in real_b:
        for key in ("fid", "kid", "pr", "dc", "fid_pixels"):
            ms[key].update(real[lo:hi], real=True)
    for lo, hi in fake_b:
        for key in ("fid", "fid_ref", "kid", "pr", "dc"):
            ms[key].update(fake[lo:hi])
        ms["is"].update(fake[lo:hi])
    for lo, hi in pixel_fake_b:
        ms["fid_pixels"](fake[lo:hi])                      # forward: adds the batch, returns None
    out = {}
    for key, m in ms.items():
        v = m.compute()
        out[key] = [float(t) for t in v] if isinstance(v, tuple) else float(v)
    out["n_fake"] = ms["fid"].result().n_fake
    out["n_real"] = ms["fid"].result().n_real
    return out


def worker(rank, world, port):
    os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = "127.0.0.1", str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    warnings.simplefilter("ignore")
    real, fake = images()
    res = {}
    for s in SCENARIOS:
        fb = batches(s, "fake", rank)
        res[s] = run_metrics(real, fake, batches(s, "real", rank), fb, os.path.join(OUT, "ref.npz"), fb)
    with open(os.path.join(OUT, f"rank{rank}.json"), "w") as fh:
        json.dump(res, fh)
    dist.destroy_process_group()


def references(real, fake):
    """fidkit's own functions, float64, on the features of each scenario's batches in rank order."""
    ex, px = fidkit.extractor("mnist", runtime="torch"), pixels()
    out = {}
    for s in SCENARIOS:
        def rows(side, key, ex):
            src = real if side == "real" else fake
            parts = [ex.outputs(src[lo:hi])[key] for r in range(2) for lo, hi in batches(s, side, r)]
            return np.concatenate(parts).astype(np.float64)
        fr, ff, lf = rows("real", "features", ex), rows("fake", "features", ex), rows("fake", "logits", ex)
        pr, pf = rows("real", "features", px), rows("fake", "features", px)
        a, b = fidkit.Stats.from_features(fr), fidkit.Stats.from_features(ff)
        fid = fidkit.frechet_distance(a.mean, a.cov, b.mean, b.cov)
        ref = fidkit.load_stats(os.path.join(OUT, "ref.npz"))
        out[s] = {"fid": fid, "fid_ref": fidkit.frechet_distance(ref.mean, ref.cov, b.mean, b.cov),
                  "kid": list(fidkit.kid(pr, pf, **KID)), "is": list(fidkit.inception_score(lf, 2)),
                  "pr": list(fidkit.precision_recall(pr, pf)), "dc": list(fidkit.density_coverage(pr, pf, 3))}
    return out


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    real, fake = images()
    ex = fidkit.extractor("mnist", runtime="torch")
    fidkit.Stats.from_features(ex.features(real[:300]), fidkit.Provenance.from_extractor(ex)).save(
        os.path.join(OUT, "ref.npz"))
    single = {}
    for s in SCENARIOS:
        rb = [b for r in range(2) for b in batches(s, "real", r)]
        fb = [b for r in range(2) for b in batches(s, "fake", r)]
        n = sum(h - l for l, h in fb)
        single[s] = run_metrics(real, fake, rb, fb, os.path.join(OUT, "ref.npz"), [(0, n)])
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    mp.spawn(worker, args=(2, port), nprocs=2, join=True)
    ranks = [json.load(open(os.path.join(OUT, f"rank{r}.json"))) for r in range(2)]
    print(json.dumps({"ranks": ranks, "single": single, "reference": references(real, fake)}))
'''


@pytest.fixture(scope="module")
def ddp(tmp_path_factory: pytest.TempPathFactory) -> dict:
    require_runtime("torch")
    pytest.importorskip("torchmetrics")
    out = tmp_path_factory.mktemp("ddp")
    script = out / "worker.py"
    script.write_text(WORKER)
    proc = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


SCENARIOS = ("uneven", "empty", "one_image")


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ddp_fid_equals_single_process(ddp: dict, scenario: str) -> None:
    single = ddp["single"][scenario]
    for rank in ddp["ranks"]:
        got = rank[scenario]
        assert got["n_fake"] == single["n_fake"] and got["n_real"] == single["n_real"]
        for key in ("fid", "fid_ref", "fid_pixels"):
            assert _rel(got[key], single[key]) < 1e-12, (key, got[key], single[key])
    assert ddp["ranks"][0][scenario] == ddp["ranks"][1][scenario]  # every process gets the same numbers
    # and the single-process metric equals fidkit's float64 functions on the same features
    ref = ddp["reference"][scenario]
    for key in ("fid", "fid_ref"):
        assert _rel(single[key], ref[key]) < 1e-12, (key, single[key], ref[key])


@pytest.mark.slow
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_ddp_row_metrics_equal_fidkit_on_rows_in_rank_order(ddp: dict, scenario: str) -> None:
    ref = ddp["reference"][scenario]
    for rank in ddp["ranks"]:
        got = rank[scenario]
        for key in ("kid", "is", "pr", "dc"):
            np.testing.assert_allclose(got[key], ref[key], rtol=1e-12, atol=1e-12, err_msg=key)
            np.testing.assert_allclose(got[key], ddp["single"][scenario][key], rtol=1e-12, atol=1e-12)


# --- single process ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tm():
    require_runtime("torch")
    pytest.importorskip("torchmetrics")
    import fidkit.integrations.torchmetrics as tm

    return tm


@pytest.fixture(scope="module")
def digits():
    import torch

    import fidkit

    x, _ = fidkit.load_mnist()
    real = torch.from_numpy(x[:300]).unsqueeze(1)
    fake = torch.from_numpy(x[300:600]).unsqueeze(1).float() / 127.5 - 1.0   # a tanh generator's range
    return real, fake * 0.9


def test_import_builds_no_framework_until_a_class_is_asked_for() -> None:
    code = ("import sys, fidkit.integrations.torchmetrics as m, fidkit.integrations.ignite as i; "
            "print(sorted(k for k in sys.modules if k.split('.')[0] in ('torch', 'torchmetrics', 'ignite')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    blocked = ("import sys, importlib.abc\n"
               "class B(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path, target=None):\n"
               "        if name.split('.')[0] in ('torch', 'torchmetrics'): raise ImportError('blocked')\n"
               "sys.meta_path.insert(0, B())\n"
               "import fidkit.integrations.torchmetrics as m\n"
               "try:\n    m.FrechetInceptionDistance\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    out = subprocess.run([sys.executable, "-c", blocked], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("BackendUnavailableError") and "pip install" in out.stdout


def test_fid_matches_fidkit_and_is_a_torchmetrics_metric(tm, digits) -> None:
    import torch
    import torchmetrics

    import fidkit

    real, fake = digits
    fid = tm.FrechetInceptionDistance("mnist", value_range=(-1, 1))
    assert isinstance(fid, torchmetrics.Metric)
    ex = fidkit.extractor("mnist", runtime="torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        for lo in range(0, 300, 128):
            fid.update(real[lo:lo + 128].float() / 127.5 - 1, real=True)
            assert fid(fake[lo:lo + 128]) is None          # forward adds the batch
        value = fid.compute()
        res = fid.result()
    assert value.dtype == torch.float64 and value.ndim == 0
    feats = [np.concatenate([ex.outputs(x[lo:lo + 128], value_range=(-1, 1))["features"]
                             for lo in range(0, 300, 128)]) for x in (real.float() / 127.5 - 1, fake)]
    a, b = (fidkit.Stats.from_features(f) for f in feats)
    assert _rel(float(value), fidkit.frechet_distance(a.mean, a.cov, b.mean, b.cov)) < 1e-12
    assert res.n_fake == 300 and res.n_real == 300 and res.provenance.extractor == "mnist"
    assert res.provenance.resize_policy == "mnist" and res.provenance.weights_sha256 != "unknown"
    assert _rel(fid.stats().mean[0], b.mean[0]) < 1e-12
    fid.reset()
    assert int(fid.fake_moments[0]) == 0 and int(fid.real_moments[0]) == 0


def test_reference_stats_once_and_reset_real_features(tm, digits, tmp_path: Path) -> None:
    import fidkit

    real, fake = digits
    ex = fidkit.extractor("mnist", runtime="torch")
    ref = fidkit.Stats.from_features(ex.features(real), fidkit.Provenance.from_extractor(ex))
    path = ref.save(tmp_path / "real.npz")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        a = tm.FrechetInceptionDistance("mnist", reference=path, value_range=(-1, 1))
        b = tm.FrechetInceptionDistance("mnist", reference=ref, value_range=(-1, 1))
        keep = tm.FrechetInceptionDistance("mnist", reset_real_features=False, value_range=(-1, 1))
        keep.update(real.float() / 127.5 - 1, real=True)
        for m in (a, b, keep):
            m.update(fake)
        first = [float(m.compute()) for m in (a, b, keep)]
        keep.reset()                                   # a new epoch: the real side stays
        keep.update(fake)
        again = float(keep.compute())
    assert first[0] == first[1] and _rel(first[2], first[0]) < 1e-6   # features of one batch vs. batched
    assert again == first[2] and int(keep.real_moments[0]) == 300
    with pytest.raises(fidkit.InputError, match="reference= already fixes"):
        a.update(real, real=True)


def test_reference_provenance_is_checked(tm, digits) -> None:
    import fidkit

    real, _ = digits
    ex = fidkit.extractor("mnist", runtime="torch", policy="clean")
    other = fidkit.Stats.from_features(ex.features(real), fidkit.Provenance.from_extractor(ex))
    with pytest.raises(fidkit.ProvenanceMismatchError, match="resize policies"):
        tm.FrechetInceptionDistance("mnist", reference=other)
    with pytest.raises(fidkit.InputError, match="feature rows, not their statistics"):
        tm.KernelInceptionDistance("mnist", reference=other)
    with pytest.raises(fidkit.InputError, match="not a file"):
        tm.FrechetInceptionDistance("mnist", reference="no-such-stats.npz")


def test_value_range_is_checked_and_input_errors(tm, digits) -> None:
    import torch

    import fidkit

    real, fake = digits
    fid = tm.FrechetInceptionDistance("mnist", value_range=(0, 1))
    with pytest.raises(fidkit.InputError, match=r"-1"):
        fid.update(fake)                                # tanh output declared as [0, 1]
    with pytest.raises(fidkit.InputError, match="torch.Tensor"):
        fid.update(fake.numpy())
    with pytest.raises(fidkit.InputError, match="from_torch"):
        tm.FrechetInceptionDistance(torch.nn.Linear(2, 2))
    with pytest.raises(fidkit.InputError, match="unknown extractor"):
        tm.FrechetInceptionDistance("no-such-net")
    fid = tm.FrechetInceptionDistance("mnist")
    fid.update(real[:1])
    with pytest.raises(fidkit.InputError, match="at least 2 images"):
        fid.compute()


def test_row_metrics_match_fidkit(tm, digits) -> None:
    import fidkit

    real, fake = digits
    ex = fidkit.extractor("mnist", runtime="torch")
    out_r, out_f = ex.outputs(real), ex.outputs(fake, value_range=(-1, 1))
    fr, ff = out_r["features"].astype(np.float64), out_f["features"].astype(np.float64)
    kid = tm.KernelInceptionDistance("mnist", subsets=20, subset_size=50, value_range=(-1, 1), reference=fr)
    isc = tm.InceptionScore("mnist", splits=3, value_range=(-1, 1))
    pr = tm.PrecisionRecall("mnist", reference=out_r["features"], value_range=(-1, 1))
    dc = tm.DensityCoverage("mnist", reference=fr, value_range=(-1, 1), compute_on_cpu=True)
    for m in (kid, isc, pr, dc):
        m.update(fake)
    np.testing.assert_allclose([float(v) for v in kid.compute()],
                               fidkit.kid(fr, ff, subsets=20, subset_size=50), rtol=1e-12)
    np.testing.assert_allclose([float(v) for v in isc.compute()],
                               fidkit.inception_score(out_f["logits"], 3), rtol=1e-12)
    assert tuple(float(v) for v in pr.compute()) == tuple(fidkit.precision_recall(fr, ff))
    assert tuple(float(v) for v in dc.compute()) == tuple(fidkit.density_coverage(fr, ff))
    assert pr.result().value == fidkit.precision_recall(fr, ff)._asdict()
    assert "kid" in str(kid.result()) and kid.result().std is not None


def test_exact_where_torchmetrics_loses_digits(tm) -> None:
    """Features with mean 1000 and spread about 1 (a user model through fidkit.from_torch): fidkit's
    float64 moments against torchmetrics' own FID with the same module as ``feature=``, both against
    fidkit.StatsAccumulator on the same features."""
    import torch
    from torchmetrics.image.fid import FrechetInceptionDistance as TorchmetricsFID

    import fidkit

    class Offset(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.proj = torch.nn.Linear(64, 16)
            with torch.no_grad():
                self.proj.weight.copy_(torch.randn(16, 64, generator=g) / 8)
                self.proj.bias.fill_(1000.0)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            # any image size (torchmetrics probes with a 299x299 RGB image); 8x8 grey passes unchanged
            x = torch.nn.functional.adaptive_avg_pool2d(x.float().mean(1, keepdim=True), 8)
            return self.proj(x.reshape(x.shape[0], -1))

    net = Offset()
    ex = fidkit.from_torch(net, "", name="offset-test", input_size=(8, 8), channels=1, input_range=(0, 255),
                           policy="mnist")
    g = torch.Generator().manual_seed(1)
    real = torch.randint(0, 256, (2000, 1, 8, 8), dtype=torch.uint8, generator=g)
    fake = torch.clamp(real.float() * 0.9 + 20, 0, 255).to(torch.uint8)
    ours = tm.FrechetInceptionDistance(ex)
    peer = TorchmetricsFID(feature=net, reset_real_features=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for lo in range(0, 2000, 250):
            ours.update(real[lo:lo + 250], real=True)
            ours.update(fake[lo:lo + 250])
            peer.update(real[lo:lo + 250].float(), real=True)
            peer.update(fake[lo:lo + 250].float(), real=False)
        got, theirs = float(ours.compute()), float(peer.compute())
    f = [np.concatenate([ex.features(x[lo:lo + 250]) for lo in range(0, 2000, 250)]) for x in (real, fake)]
    a, b = (fidkit.StatsAccumulator().update(v).stats() for v in f)
    exact = fidkit.frechet_distance(a.mean, a.cov, b.mean, b.cov)
    assert _rel(got, exact) < 1e-12
    # torchmetrics' sums of outer products: recorded, not asserted beyond "no better than ours"
    assert _rel(theirs, exact) >= _rel(got, exact)


def test_clone_pickle_and_merge_state(tm, digits) -> None:
    """torchmetrics' clone (MetricCollection, wrappers), pickling and merge_state keep the exact state."""
    import pickle

    import fidkit

    real, _ = digits
    a = tm.FrechetInceptionDistance("mnist")
    b = tm.FrechetInceptionDistance("mnist")
    a.update(real[:100], real=True)
    a.update(real[100:200])
    b.update(real[200:300])
    b.update(real[:100], real=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fidkit.FidkitWarning)
        value = float(a.compute())
        assert float(a.clone().compute()) == value
        assert float(pickle.loads(pickle.dumps(a)).compute()) == value
        whole = tm.FrechetInceptionDistance("mnist")
        for lo, hi, real_side in ((0, 100, True), (100, 200, False), (200, 300, False), (0, 100, True)):
            whole.update(real[lo:hi], real=real_side)
        a.merge_state(b)
        assert _rel(float(a.compute()), float(whole.compute())) < 1e-12
    assert int(a.fake_moments[0]) == 200 and int(a.real_moments[0]) == 200
    own = tm.FrechetInceptionDistance(fidkit.extractor("mnist", runtime="torch"))
    with pytest.raises(fidkit.InputError, match="cannot be pickled"):
        pickle.dumps(own)
