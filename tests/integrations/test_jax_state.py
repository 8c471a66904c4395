"""fidkit.integrations.jax: the jit-able statistics state equals fidkit.StatsAccumulator on the same features.

JAX fixes its device count and 64-bit mode when it is first imported, so the checks run in two
subprocesses with four CPU devices (XLA_FLAGS=--xla_force_host_platform_device_count=4), one in JAX's
default float32 mode and one with JAX_ENABLE_X64=1; each reports its measurements as JSON and the tests
below judge them. float64: 1e-12 relative. float32: the bound the module docstring derives,
(B + P + 4) 2⁻²⁴ sqrt(v_i v_j), checked entry by entry.
The two workers take about 12 s each on 2 cores.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import require_runtime

WORKER = r'''
import json, math, sys
import numpy as np
import jax, jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec as P
import fidkit
import fidkit.integrations.jax as fj

X64 = bool(jax.config.jax_enable_x64)
FT = np.float64 if X64 else np.float32
U = 2.0 ** -53 if X64 else 2.0 ** -24
rng = np.random.default_rng(14)
D, N, B = 64, 9937, 500                           # N not a multiple of B: a padded, masked last batch
A = rng.standard_normal((D, D)) / math.sqrt(D)
X = (100.0 + rng.standard_normal((N, D)) @ A.T).astype(FT)   # mean 100, std about 1
REF = fidkit.StatsAccumulator().update(X).stats()
out = {"x64": X64, "devices": jax.device_count(), "dtype": str(fj.init(D).s2.dtype)}


def errors(stats, state_shift, b, p, ref=REF):
    """Largest error as a fraction of the bound, and relative errors, against ``ref``."""
    v = np.diag(ref.cov) + (ref.mean - np.asarray(state_shift, np.float64)) ** 2
    bound = (b + p + 4) * U
    dcov = np.abs(stats.cov - ref.cov)
    dmean = np.abs(stats.mean - ref.mean)
    return {"n": stats.n, "cov_vs_bound": float((dcov / (bound * np.sqrt(np.outer(v, v)))).max()),
            "mean_vs_bound": float((dmean / (bound * np.sqrt(v))).max()),
            "cov_rel": float(dcov.max() / np.abs(ref.cov).max()),
            "cov_rel_std": float((dcov / np.sqrt(np.outer(np.diag(ref.cov), np.diag(ref.cov)))).max()),
            "mean_rel": float(dmean.max() / np.abs(ref.mean).max()),
            "mean_rel_std": float((dmean / np.sqrt(np.diag(ref.cov))).max())}


def padded_batches(x, b):
    """(k, b, d) batches and (k, b) masks; the last batch padded with NaN rows that the mask drops."""
    k = max(1, math.ceil(len(x) / b))
    xs = np.full((k * b, x.shape[1]), np.nan, x.dtype)
    xs[:len(x)] = x
    mask = np.arange(k * b) < len(x)
    return xs.reshape(k, b, -1), mask.reshape(k, b)


# 1. jit: batches of B, the last one padded and masked
upd = jax.jit(fj.update)
xs, ms = padded_batches(X, B)
st = fj.init(D)
for xb, mb in zip(xs, ms):
    st = upd(st, xb, mb)
out["jit"] = errors(fj.finalize(st), st.shift, B, 1)

# the reason for centring: float32 raw sums (n, Σx, Σxxᵀ) on the same batches
s1, s2 = np.zeros(D, FT), np.zeros((D, D), FT)
raw = jax.jit(lambda s1, s2, xb: (s1 + xb.sum(0), s2 + jnp.dot(xb.T, xb, precision="highest")))
for xb, mb in zip(xs, ms):
    s1, s2 = raw(s1, s2, np.where(mb[:, None], xb, 0).astype(FT))
m = np.float64(s1) / N
raw_cov = (np.float64(s2) - N * np.outer(m, m)) / (N - 1)
out["raw_sums"] = {"cov_rel_std": float((np.abs(raw_cov - REF.cov) / np.sqrt(np.outer(np.diag(REF.cov),
                   np.diag(REF.cov)))).max()), "mean_rel_std": float((np.abs(m - REF.mean)
                   / np.sqrt(np.diag(REF.cov))).max())}

# 2. four devices, uneven shares (0, 1, 3000 and the rest rows), padded to one shape and masked
ndev = jax.device_count()
cuts = [0, 0, 1, 3001, N][: ndev + 1] if ndev == 4 else list(np.linspace(0, N, ndev + 1).astype(int))
shares = [X[a:b] for a, b in zip(cuts[:-1], cuts[1:])]
per_dev = [padded_batches(s, B) for s in shares]
k = max(p[0].shape[0] for p in per_dev)
XD = np.full((ndev, k, B, D), np.nan, FT)
MD = np.zeros((ndev, k, B), bool)
for i, (xb, mb) in enumerate(per_dev):
    XD[i, :len(xb)], MD[i, :len(mb)] = xb, mb
out["shares"] = [len(s) for s in shares]


def device_loop(x, mask):
    st, _ = jax.lax.scan(lambda st, xm: (fj.update(st, xm[0], xm[1]), None), fj.init(D), (x, mask))
    return fj.psum(st, "i")


mesh = Mesh(np.array(jax.devices()), ("i",))
sm = jax.jit(jax.shard_map(lambda x, m: device_loop(x[0], m[0]), mesh=mesh, in_specs=(P("i"), P("i")),
                           out_specs=P(), check_vma=False))
st = sm(XD, MD)
out["shard_map"] = errors(fj.finalize(st), st.shift, B, ndev)

pm = jax.pmap(device_loop, axis_name="i")
stacked = pm(XD, MD)
first = jax.tree.map(lambda a: a[0], stacked)
out["pmap"] = errors(fj.finalize(first), first.shift, B, ndev)
out["pmap_replicas_equal"] = all(bool(np.array_equal(np.asarray(a), np.broadcast_to(np.asarray(a)[0],
                                 np.asarray(a).shape))) for a in stacked)
try:
    fj.finalize(stacked)
    out["finalize_stacked"] = "no error"
except fidkit.InputError as exc:
    out["finalize_stacked"] = str(exc)

# 3. merge: associativity (three states with different reference points, one empty), jit, identity
parts = [X[:1], X[1:4000], X[4000:]]
states = []
for p in parts:
    s = fj.init(D)
    for i in range(0, len(p), B):
        s = upd(s, p[i:i + B])
    states.append(s)
empty = fj.init(D)
mj = jax.jit(fj.merge)
left = fj.finalize(mj(mj(states[0], states[1]), states[2]))
right = fj.finalize(mj(states[0], mj(states[1], states[2])))
swapped = fj.finalize(mj(mj(states[2], empty), mj(states[1], states[0])))
out["merge_left"] = errors(left, states[0].shift, B, 3)
out["merge_right"] = errors(right, states[0].shift, B, 3)
out["merge_swapped"] = errors(swapped, states[2].shift, B, 4)
out["merge_left_vs_right_rel"] = float(np.abs(left.cov - right.cov).max() / np.abs(left.cov).max())
ident = fj.finalize(fj.merge(empty, states[1]))
alone = fj.finalize(states[1])
out["merge_empty_identity"] = bool(np.array_equal(ident.cov, alone.cov) and np.array_equal(ident.mean,
                                   alone.mean) and ident.n == alone.n)

# 4. FID from the finalized state against fidkit's host FID on the same features
Y = (100.5 + 1.3 * rng.standard_normal((5000, D)) @ A.T).astype(FT)
other = fidkit.StatsAccumulator().update(Y).stats()
st = fj.init(D)
for xb, mb in zip(xs, ms):
    st = upd(st, xb, mb)
fid_jax = fidkit.frechet_distance(fj.finalize(st).mean, fj.finalize(st).cov, other.mean, other.cov)
fid_host = fidkit.frechet_distance(REF.mean, REF.cov, other.mean, other.cov)
out["fid"] = {"jax": float(fid_jax), "host": float(fid_host),
              "rel": float(abs(fid_jax - fid_host) / fid_host)}

# 5. score_sampler: a toy generator and feature map, checked against the same samples drawn on the host
d2, bs, num = 16, 24, 203                          # 203 = 2 rounds of 4 x 24 + 11: a ragged last round
W = jnp.asarray(rng.standard_normal((64, d2)) / 8, FT)
params = {"mu": jnp.asarray(3.0, FT)}


def sample_fn(params, key):
    return params["mu"] + jax.random.normal(key, (bs, 8, 8, 1), FT)


def features_fn(images):
    return 50.0 + images.reshape(images.shape[0], -1) @ W


key = jax.random.PRNGKey(7)
feats = np.concatenate([np.asarray(features_fn(sample_fn(params, jax.random.fold_in(key, g))))
                        for g in range(math.ceil(num / bs))])[:num]
ref2 = fidkit.StatsAccumulator().update(feats).stats()
prov = fidkit.Provenance(extractor="toy", description="score_sampler test")
got = fj.score_sampler(sample_fn, params, key, num, features_fn, provenance=prov)
one = fj.score_sampler(sample_fn, params, key, num, features_fn, devices=jax.devices()[:1])
out["sampler"] = errors(got, feats[:bs].mean(0), bs, ndev, ref=ref2)
out["sampler_one_device"] = errors(one, feats[:bs].mean(0), bs, 1, ref=ref2)
out["sampler_provenance"] = got.provenance.extractor
hits = fj._sampler_program.cache_info().hits
again = fj.score_sampler(sample_fn, params, key, num, features_fn)
out["sampler_cached"] = fj._sampler_program.cache_info().hits == hits + 1
out["sampler_repeatable"] = bool(np.array_equal(again.cov, got.cov) and np.array_equal(again.mean, got.mean))

# 6. errors
errs = {}
for name, call in {"update_dim": lambda: fj.update(fj.init(4), np.zeros((3, 5), FT)),
                   "update_mask": lambda: fj.update(fj.init(4), np.zeros((3, 4), FT), np.ones(2, bool)),
                   "init_dim": lambda: fj.init(0),
                   "finalize_one_row": lambda: fj.finalize(fj.update(fj.init(4), np.ones((1, 4), FT))),
                   "finalize_nan": lambda: fj.finalize(fj.update(fj.init(2), np.array([[1, np.nan],
                                                                                        [2, 3]], FT))),
                   "merge_dim": lambda: fj.merge(fj.init(4), fj.init(5)),
                   "init_float64": lambda: fj.init(4, np.float64),
                   "init_dtype": lambda: fj.init(4, "no-such-dtype"),
                   "init_int": lambda: fj.init(4, np.int32)}.items():
    try:
        call()
        errs[name] = None
    except fidkit.InputError as exc:
        errs[name] = str(exc)
out["errors"] = errs
print(json.dumps(out))
'''


def _worker(x64: bool) -> dict:
    require_runtime("jax")
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu",
               JAX_ENABLE_X64="1" if x64 else "0")
    proc = subprocess.run([sys.executable, "-c", WORKER], capture_output=True, text=True, env=env,
                          check=False, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def f32() -> dict:
    return _worker(x64=False)


@pytest.fixture(scope="module")
def f64() -> dict:
    return _worker(x64=True)


CASES = ["jit", "shard_map", "pmap", "merge_left", "merge_right", "merge_swapped"]


@pytest.mark.jax
def test_modes_and_devices(f32: dict, f64: dict) -> None:
    assert (f32["x64"], f32["dtype"], f32["devices"]) == (False, "float32", 4)
    assert (f64["x64"], f64["dtype"], f64["devices"]) == (True, "float64", 4)
    assert f32["shares"] == [0, 1, 3000, 6936]


@pytest.mark.jax
@pytest.mark.parametrize("case", CASES)
def test_float64_state_equals_the_accumulator(f64: dict, case: str) -> None:
    r = f64[case]
    assert r["n"] == 9937
    assert r["cov_rel"] < 1e-12 and r["mean_rel"] < 1e-12, r


@pytest.mark.jax
@pytest.mark.parametrize("case", CASES)
def test_float32_state_is_within_the_stated_bound(f32: dict, case: str) -> None:
    r = f32[case]
    assert r["n"] == 9937
    assert r["cov_vs_bound"] <= 1.0 and r["mean_vs_bound"] <= 1.0, r


@pytest.mark.jax
def test_float32_centring_beats_raw_sums_on_a_large_mean(f32: dict) -> None:
    # mean 100, std 1: raw float32 sums cancel about 5 digits; the centred, compensated state does not
    assert f32["jit"]["cov_rel_std"] < 1e-6
    assert f32["raw_sums"]["cov_rel_std"] > 100 * f32["jit"]["cov_rel_std"]


@pytest.mark.jax
def test_merge_is_associative_and_empty_is_its_identity(f32: dict, f64: dict) -> None:
    assert f64["merge_left_vs_right_rel"] < 1e-13
    assert f32["merge_left_vs_right_rel"] < 1e-6
    assert f32["merge_empty_identity"] and f64["merge_empty_identity"]


@pytest.mark.jax
def test_pmap_psum_gives_every_device_the_same_state(f32: dict, f64: dict) -> None:
    assert f32["pmap_replicas_equal"] and f64["pmap_replicas_equal"]
    assert "leading axes (4,)" in f32["finalize_stacked"]


@pytest.mark.jax
def test_fid_of_finalized_state_equals_host_fid(f32: dict, f64: dict) -> None:
    assert f64["fid"]["rel"] < 1e-12, f64["fid"]
    assert f32["fid"]["rel"] < 1e-5, f32["fid"]


@pytest.mark.jax
@pytest.mark.parametrize("mode", ["f32", "f64"])
@pytest.mark.parametrize("case", ["sampler", "sampler_one_device"])
def test_score_sampler_scores_exactly_num_samples_on_any_device_count(request: pytest.FixtureRequest,
                                                                      mode: str, case: str) -> None:
    res = request.getfixturevalue(mode)
    r = res[case]
    assert r["n"] == 203
    if res["x64"]:
        assert r["cov_rel"] < 1e-12 and r["mean_rel"] < 1e-12, r
    else:
        assert r["cov_vs_bound"] <= 1.0 and r["mean_vs_bound"] <= 1.0, r
    assert res["sampler_provenance"] == "toy"
    assert res["sampler_cached"] and res["sampler_repeatable"]  # a second call reuses the compiled program


@pytest.mark.jax
def test_errors_say_what_was_expected(f32: dict, f64: dict) -> None:
    e = f32["errors"]
    assert "features must be (B, 4)" in e["update_dim"]
    assert "mask must have shape (3,)" in e["update_mask"]
    assert "positive int" in e["init_dim"]
    assert "at least 2 feature rows" in e["finalize_one_row"]
    assert "NaN or infinity" in e["finalize_nan"]
    assert "feature dimension or dtype" in e["merge_dim"]
    assert "jax_enable_x64" in e["init_float64"]
    assert f64["errors"]["init_float64"] is None
    assert "float32 or float64" in e["init_dtype"] and "float32 or float64" in e["init_int"]


BLOCKER = """
import importlib.abc, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split('.')[0] in ('jax', 'jaxlib'):
            raise ImportError('blocked framework import: ' + name)
sys.meta_path.insert(0, Block())
"""


def _run(code: str) -> dict:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_importing_fidkit_and_the_integration_imports_no_jax() -> None:
    res = _run("import json, sys, fidkit, fidkit.integrations, fidkit.integrations.jax\n"
               "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'jaxlib'))))")
    assert res == []


def test_without_jax_the_integration_raises_backend_unavailable() -> None:
    res = _run(BLOCKER + """
import json, fidkit, fidkit.integrations.jax as fj
try:
    fj.init(8)
    print(json.dumps(None))
except fidkit.BackendUnavailableError as exc:
    print(json.dumps([isinstance(exc, ImportError), str(exc)]))
""")
    assert res is not None and res[0]
    assert "pip install 'fidkit[jax]'" in res[1] and "fidkit.integrations.jax" in res[1]
