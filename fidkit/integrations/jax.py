"""fidkit's feature statistics as a pure JAX state: accumulated inside jit, across devices and hosts.

    import jax, fidkit.integrations.jax as fj

    state = fj.init(2048)                                   # before the loop
    state = jax.jit(fj.update)(state, feats, mask)          # per batch, inside your own jitted step too
    state = fj.psum(state, "devices")                       # inside shard_map / pmap: all devices' rows
    stats = fj.finalize(state, provenance)                  # on the host: a fidkit.Stats, float64

The state (`State`) is a NamedTuple of arrays — the sufficient statistics of the rows seen so far,
centred on a reference point ``K`` (``shift``, the mean of the first non-empty batch):

    n,  S1 = Σ (x - K),  S2 = Σ (x - K)(x - K)ᵀ

so ``mean = K + S1/n`` and ``cov = (S2 - S1 S1ᵀ/n) / (n - 1)``, evaluated in float64 by `finalize`.
Centring is what keeps float32 exact enough: raw sums Σx, Σxxᵀ cancel catastrophically when the mean
is large compared with the spread (features with mean 100 and std 1 lose about 5 of float32's 7
digits), while ``x - K`` is of the order of the spread. Each of S1 and S2 is held as a float pair
(leading part and the rounding errors caught by Knuth's error-free TwoSum), so the error does not grow
with the number of batches. Two states with different ``K`` are merged by re-centring one on the
other's ``K`` (an exact identity, rounded once): `merge` and `psum` are exact up to that rounding.

Precision. With ``jax_enable_x64`` on, the state is float64 and agrees with `fidkit.StatsAccumulator`
to rounding (about 1e-15 relative; the tests ask 1e-12). Without it (JAX's default) the state is
float32 and the error of the finalised covariance is bounded by

    |Δcov_ij| <= (B + P + 4) u sqrt(v_i v_j),   |Δmean_i| <= (B + P + 4) u sqrt(v_i),   u = 2⁻²⁴

where B is the largest number of rows in one `update`, P the number of states merged or psum'd, and
``v_i = cov_ii + (mean_i - K_i)²`` (with K the first batch's mean, ``v_i`` exceeds the variance by
about a factor 1 + 1/B). The B u term is the float32 dot product of one batch (Higham, *Accuracy and
Stability of Numerical Algorithms*, §3.1: |Δ(yᵀy)| <= γ_B |y|ᵀ|y|), P u is the re-centring and the
device all-reduce, the rest is TwoSum's carried rounding; the bound does not depend on the size of the
mean nor on the number of batches. The bound is a worst case; measured (tests/integrations/
test_jax_state.py: mean 100, std 1, d = 64, N = 9,937 float32 rows, batches of 500, against
`fidkit.StatsAccumulator` in float64 on the same rows): covariance error 6e-8 of sqrt(cov_ii cov_jj)
under jit, 1.2e-7 psum'd over 4 devices holding 0, 1, 3000 and 6936 rows; mean error 4e-9 of the
std; FID against another sample 7e-9 relative. Float32 raw sums on the same batches: 5e-3 and 1.6e-5.

Counts are int32 in float32 mode (2³¹ rows at most). Rows with a false ``mask`` entry are ignored,
padded rows included: pad a short last batch (or a device's empty share) to the compiled shape and mask
the padding, and nothing recompiles. Non-finite features make `finalize` raise (JAX cannot raise inside
a jitted function).

Across hosts: after ``jax.distributed.initialize()`` every process sees all devices in
``jax.devices()``; a ``shard_map`` over a mesh of them with `psum` on its axis sums the rows of every
device of every process, and the result is replicated, so `finalize` on any process (each holds a copy)
gives the same `Stats`. `score_sampler` does exactly that by default. (The multi-device case is tested on
one process with several CPU devices; the multi-process case follows from JAX's collectives, untested
here.)

Importing this module does not import JAX; its functions do, and raise `fidkit.BackendUnavailableError`
when JAX is not installed.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from ..errors import InputError
from ..registry import import_runtime
from ..stats import Provenance, Stats

__all__ = ["State", "finalize", "init", "merge", "psum", "score_sampler", "update"]

_PURPOSE = "fidkit.integrations.jax"


def _jax() -> Any:
    return import_runtime("jax", _PURPOSE)


class State(NamedTuple):
    """Sufficient statistics of the rows seen so far, centred on ``shift`` (a JAX pytree).

    ``n`` () int: rows counted; ``shift`` (d,): the reference point K; ``s1`` + ``c1`` (d,): Σ (x - K)
    as leading part + rounding errors; ``s2`` + ``c2`` (d, d): Σ (x - K)(x - K)ᵀ likewise. All float
    arrays share one dtype, float32 or float64. Build it with `init`; treat the fields as opaque.
    """

    n: Any
    shift: Any
    s1: Any
    c1: Any
    s2: Any
    c2: Any


def _float_dtype(dtype: Any) -> Any:
    x64 = bool(_jax().config.jax_enable_x64)
    if dtype is None:
        return np.dtype(np.float64 if x64 else np.float32)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise InputError(f"{_PURPOSE}.init: dtype must be float32 or float64, received {dtype!r}") from None
    if dt == np.float64 and not x64:
        raise InputError(f"{_PURPOSE}.init: dtype float64 needs JAX's 64-bit mode, which is off; call "
                         f"jax.config.update('jax_enable_x64', True) at startup (or set JAX_ENABLE_X64=1),"
                         f" or use float32 (the default), whose error bound the module docstring states")
    if dt not in (np.float32, np.float64):
        raise InputError(f"{_PURPOSE}.init: dtype must be float32 or float64, received {dt}")
    return dt


def init(dim: int, dtype: Any = None) -> State:
    """Returns the empty state for ``dim``-dimensional features.

    ``dtype`` None: float64 when ``jax_enable_x64`` is on, else float32 (see the module docstring for
    the float32 error bound). Pure: may be called inside ``jit`` / ``shard_map``.
    """
    if not isinstance(dim, (int, np.integer)) or isinstance(dim, bool) or dim < 1:
        raise InputError(f"{_PURPOSE}.init: dim must be a positive int (the feature dimension), "
                         f"received {dim!r}")
    jnp = _jax().numpy
    dt = _float_dtype(dtype)
    d = int(dim)
    z1 = jnp.zeros((d,), dt)
    z2 = jnp.zeros((d, d), dt)
    return State(jnp.zeros((), np.int64 if dt == np.float64 else np.int32), z1, z1, z1, z2, z2)


def _two_sum(a: Any, b: Any) -> tuple[Any, Any]:
    """Returns (s, e) with s = fl(a + b) and a + b = s + e exactly (Knuth; branch-free, any magnitudes)."""
    s = a + b
    bb = s - a
    return s, (a - (s - bb)) + (b - bb)


def _gram(y: Any) -> Any:
    jax = _jax()
    return jax.lax.dot_general(y, y, (((0,), (0,)), ((), ())), precision=jax.lax.Precision.HIGHEST,
                               preferred_element_type=y.dtype)


def update(state: State, features: Any, mask: Any = None) -> State:
    """Returns ``state`` with the rows of a (B, d) ``features`` batch added; pure and jit-able.

    ``mask`` (B,) bool (or 0/1): only rows where it is true count; use it for padding, so that every
    batch has the compiled shape. Masked rows may hold anything, NaN included.
    """
    jax = _jax()
    jnp = jax.numpy
    d = state.shift.shape[-1]
    x = jnp.asarray(features)
    if x.ndim != 2 or x.shape[1] != d:
        raise InputError(f"{_PURPOSE}.update: features must be (B, {d}) for this state, received shape "
                         f"{tuple(x.shape)}")
    dt = state.shift.dtype
    x = x.astype(dt)
    b = x.shape[0]
    if mask is None:
        keep = jnp.ones((b,), bool)
    else:
        keep = jnp.asarray(mask)
        if keep.shape != (b,):
            raise InputError(f"{_PURPOSE}.update: mask must have shape ({b},) to match the features, "
                             f"received {tuple(keep.shape)}")
        keep = keep.astype(bool)
    count = jnp.sum(keep, dtype=state.n.dtype)
    # K: the first non-empty batch's mean; the sums of an empty state are zero, so moving K costs nothing
    batch_mean = jnp.sum(jnp.where(keep[:, None], x, 0), axis=0) / jnp.maximum(count, 1).astype(dt)
    shift = jnp.where((state.n == 0) & (count > 0), batch_mean, state.shift)
    y = jnp.where(keep[:, None], x - shift, 0)
    s1, e1 = _two_sum(state.s1, jnp.sum(y, axis=0))
    s2, e2 = _two_sum(state.s2, _gram(y))
    return State(state.n + count, shift, s1, state.c1 + e1, s2, state.c2 + e2)


def _recentre(state: State, shift: Any) -> State:
    """Returns ``state`` centred on ``shift``: with y = x - K and δ = K - shift, x - shift = y + δ, so
    S1' = S1 + nδ and S2' = S2 + S1δᵀ + δS1ᵀ + nδδᵀ (exact identities, each rounded once)."""
    jnp = _jax().numpy
    dt = state.shift.dtype
    delta = state.shift - shift
    n = state.n.astype(dt)
    t1 = state.s1 + state.c1
    s1, e1 = _two_sum(state.s1, n * delta)
    corr = jnp.outer(t1, delta)
    corr = corr + corr.T + n * jnp.outer(delta, delta)
    s2, e2 = _two_sum(state.s2, corr)
    return State(state.n, jnp.broadcast_to(shift, state.shift.shape).astype(dt), s1, state.c1 + e1, s2,
                 state.c2 + e2)


def _check_pair(a: State, b: State, where: str) -> None:
    if a.shift.shape != b.shift.shape or a.shift.dtype != b.shift.dtype:
        raise InputError(f"{_PURPOSE}.{where}: the states differ in feature dimension or dtype "
                         f"({a.shift.shape} {a.shift.dtype} vs {b.shift.shape} {b.shift.dtype}); "
                         f"merge only states of one extractor built with one dtype")


def merge(a: State, b: State) -> State:
    """Returns the state of the union of the rows of ``a`` and ``b`` (pure, jit-able, associative up to
    rounding): the smaller is re-centred on the larger one's reference point (``a``'s on a tie) and the
    sums add, their rounding errors caught by TwoSum. An empty state is an exact identity."""
    _check_pair(a, b, "merge")
    jnp = _jax().numpy
    shift = jnp.where(a.n >= b.n, a.shift, b.shift)
    a, b = _recentre(a, shift), _recentre(b, shift)
    s1, e1 = _two_sum(a.s1, b.s1)
    s2, e2 = _two_sum(a.s2, b.s2)
    return State(a.n + b.n, shift, s1, a.c1 + b.c1 + e1, s2, a.c2 + b.c2 + e2)


def psum(state: State, axis_name: Any) -> State:
    """Returns the state of every row on every device along ``axis_name`` (inside ``shard_map`` or
    ``pmap``; a tuple of axis names sums over several), the same on each device.

    The devices first agree on one reference point (that of the device with the most rows, by an
    all-gather of the P counts and (P, d) shifts), re-centre on it and then ``lax.psum`` the sums;
    under ``jax.distributed`` the axis spans the devices of every process.
    """
    lax = _jax().lax
    counts = lax.all_gather(state.n, axis_name)
    shifts = lax.all_gather(state.shift, axis_name)
    counts = counts.reshape(-1)
    shift = shifts.reshape(counts.shape[0], -1)[_jax().numpy.argmax(counts)]
    c = _recentre(state, shift)
    n, s1, c1, s2, c2 = lax.psum((c.n, c.s1, c.c1, c.s2, c.c2), axis_name)
    return State(n, shift, s1, c1, s2, c2)


def _host(a: Any, field: str) -> np.ndarray:
    jax = _jax()
    if isinstance(a, jax.Array) and not a.is_fully_addressable:
        if not a.is_fully_replicated:
            raise InputError(f"{_PURPOSE}.finalize: state field {field!r} is sharded across processes; "
                             f"psum the state over the device axis first (fidkit.integrations.jax.psum)")
        a = a.addressable_data(0)
    return np.asarray(jax.device_get(a))


def finalize(state: State, provenance: Provenance | None = None) -> Stats:
    """Returns the `fidkit.Stats` (float64 mean and covariance, n) of the rows in ``state``; on the host.

    ``provenance`` describes the features (e.g. ``fidkit.Provenance.from_extractor(ex)``); unknown if
    None. Raises InputError for fewer than 2 rows, non-finite features, or a state with a leading device
    axis (after ``pmap``, pass ``jax.tree.map(lambda a: a[0], state)`` of the psum'd state).
    """
    if not isinstance(state, State):
        raise InputError(f"{_PURPOSE}.finalize: expected a fidkit.integrations.jax.State, received "
                         f"{type(state).__name__}")
    host = {f: _host(getattr(state, f), f) for f in State._fields}
    if host["n"].ndim != 0:
        raise InputError(f"{_PURPOSE}.finalize: expected one state, received one with leading axes "
                         f"{host['n'].shape} (a pmap/vmap output); psum it over the device axis and pass "
                         f"jax.tree.map(lambda a: a[0], state), or merge the states")
    n = int(host["n"])
    if n < 2:
        raise InputError(f"{_PURPOSE}.finalize: a covariance needs at least 2 feature rows, the state "
                         f"holds {n}; add more images (masked rows do not count)")
    f64 = {f: host[f].astype(np.float64) for f in ("shift", "s1", "c1", "s2", "c2")}
    if not all(np.all(np.isfinite(v)) for v in f64.values()):
        raise InputError(f"{_PURPOSE}.finalize: the statistics are not finite: the features contained "
                         f"NaN or infinity (or overflowed float32); check the images and the extractor")
    m = (f64["s1"] + f64["c1"]) / n
    m2 = (f64["s2"] + f64["c2"]) - n * np.outer(m, m)
    cov = (m2 + m2.T) / (2.0 * (n - 1))
    return Stats(n, f64["shift"] + m, cov, provenance if provenance is not None else Provenance())


def score_sampler(sample_fn: Callable[[Any, Any], Any], params: Any, rng: Any, num: int,
                  features_fn: Callable[[Any], Any], *, devices: Sequence[Any] | None = None,
                  provenance: Provenance | None = None, dtype: Any = None,
                  axis_name: str = "fidkit_devices") -> Stats:
    """Returns the `Stats` of the features of ``num`` samples of ``sample_fn``, generated on all devices.

    ``sample_fn(params, key) -> images`` draws one batch (its size B is the leading axis of what it
    returns); ``features_fn(images) -> (B, d) features`` is a JAX function (e.g. an extractor written
    in JAX, or ``fidkit.from_jax``'s function). Batch g (g = 0, 1, ...) is drawn with
    ``jax.random.fold_in(rng, g)`` and the first ``num`` rows of batches 0, 1, ... count, so the samples
    — and the statistics, up to rounding — do not depend on the number of devices. The batches are dealt
    round-robin over ``devices`` (default ``jax.devices()``: under ``jax.distributed`` the devices of
    every process; ``params`` and ``rng`` must then be the same on every process) in one jitted
    ``shard_map``; each device accumulates its rows in a `State` and `psum` combines them. The rows of
    the last round beyond ``num`` are computed and masked out. The compiled program is cached (the last
    8, keyed by the two functions, ``num``, the devices and the feature shape), so scoring every epoch
    with the same functions compiles once.
    """
    jax = _jax()
    if not isinstance(num, (int, np.integer)) or isinstance(num, bool) or num < 2:
        raise InputError(f"{_PURPOSE}.score_sampler: num must be an int >= 2 (samples to score), "
                         f"received {num!r}")
    devs = list(jax.devices() if devices is None else devices)
    if not devs:
        raise InputError(f"{_PURPOSE}.score_sampler: devices is empty")
    out = jax.eval_shape(lambda p, k: features_fn(sample_fn(p, k)), params, rng)
    if not hasattr(out, "shape") or len(out.shape) != 2:
        raise InputError(f"{_PURPOSE}.score_sampler: features_fn(sample_fn(params, rng)) must return "
                         f"(B, d) features, returned {getattr(out, 'shape', type(out).__name__)}")
    key = (sample_fn, features_fn, int(num), tuple(devs), int(out.shape[0]), int(out.shape[1]),
           _float_dtype(dtype), axis_name)
    try:
        hash(key)
    except TypeError:  # an unhashable function: build (and compile) afresh
        program = _sampler_program.__wrapped__(*key)
    else:
        program = _sampler_program(*key)
    return finalize(program(params, rng), provenance)


@functools.lru_cache(maxsize=8)
def _sampler_program(sample_fn: Callable[[Any, Any], Any], features_fn: Callable[[Any], Any], num: int,
                     devs: tuple[Any, ...], batch: int, dim: int, dtype: Any,
                     axis_name: str) -> Callable[[Any, Any], State]:
    """Returns the jitted shard_map of `score_sampler`; cached, so scoring every epoch compiles once."""
    jax = _jax()
    jnp = jax.numpy
    from jax.sharding import Mesh, PartitionSpec

    ndev = len(devs)
    rounds = math.ceil(num / (ndev * batch))

    def per_device(params: Any, rng: Any) -> State:
        dev = jax.lax.axis_index(axis_name)

        def body(i: Any, st: State) -> State:
            g = i * ndev + dev
            feats = features_fn(sample_fn(params, jax.random.fold_in(rng, g)))
            rows = g * batch + jnp.arange(batch)
            return update(st, feats, mask=rows < num)

        st = jax.lax.fori_loop(0, rounds, body, init(dim, dtype))
        return psum(st, axis_name)

    mesh = Mesh(np.array(devs), (axis_name,))
    spec = PartitionSpec()
    return jax.jit(_shard_map(per_device, mesh, (spec, spec), spec))


def _shard_map(f: Callable[..., Any], mesh: Any, in_specs: Any, out_specs: Any) -> Callable[..., Any]:
    """``jax.shard_map`` without replication checking (the loop carry becomes device-varying after the
    first update; `psum` makes the result replicated), or its pre-0.6 home in jax.experimental."""
    jax = _jax()
    if hasattr(jax, "shard_map"):
        return jax.shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_vma=False)
    from jax.experimental.shard_map import shard_map

    return shard_map(f, mesh=mesh, in_specs=in_specs, out_specs=out_specs, check_rep=False)
