"""The command line as a user meets it (issue 13): the real ``fidkit`` entry point in a subprocess, its exit
status, its one message line, and the files it writes or leaves alone."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from argparse import ArgumentParser, Namespace, _SubParsersAction
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import fidkit
from fidkit.cli import _lines, build_parser
from fidkit.resize import available_policies
from fidkit.stats import Stats, load

FIDKIT = Path(sys.executable).with_name("fidkit")


def fidkit_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Runs the installed ``fidkit`` script (offline) in ``cwd``."""
    env = {**os.environ, "FIDKIT_OFFLINE": "1"}
    return subprocess.run([str(FIDKIT), *map(str, args)], cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=600, check=False)


def tree(root: Path) -> list[str]:
    """Returns every path under ``root`` (hidden ones too), relative, sorted."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def assert_one_error(r: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Asserts exit status 2, nothing on stdout and exactly one line on stderr, 'fidkit: ...', without
    a traceback; returns that line."""
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert r.stdout == "" and "Traceback" not in r.stderr, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fidkit: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def work(tmp_path: Path) -> Path:
    """A folder holding features x.npy, statistics s.npz and an image folder imgs/ (3 PNGs), nothing else."""
    rng = np.random.default_rng(0)
    np.save(tmp_path / "x.npy", rng.standard_normal((30, 4)))
    Stats.from_features(rng.standard_normal((30, 4))).save(tmp_path / "s.npz")
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "imgs" / f"{i}.png")
    return tmp_path


# ------------------------------------------------------------------------------------------ output files


@pytest.mark.slow
def test_unwritable_outputs_are_one_line_errors_before_any_work(work: Path) -> None:
    (work / "out").mkdir()
    (work / "imgs" / "broken.png").write_bytes(b"not a png")  # decoding it would fail: it must not be reached
    before = tree(work)
    cases = [
        ("/proc/a.npz", ("-o /proc/a.npz: cannot create a file in /proc",)),
        ("out", ("-o out: is a folder",)),
        ("out/", ("is a folder",)),
        (work / "no" / "dir" / "a.npz", ("no folder", "--parents")),
        ("x.npy/a.npz", ("x.npy is a file, not a folder",)),
        ("/dev/null", ("not a regular file",)),
    ]
    runs = [("stats", out, needles) for out, needles in cases] + [("features", *cases[i]) for i in (0, 3)]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda c: fidkit_cli(c[0], "imgs", "-o", c[1], cwd=work), runs))
    for (cmd, _, needles), r in zip(runs, results, strict=True):
        line = assert_one_error(r, *needles)
        assert "broken.png" not in line and "extractor" not in line, (cmd, line)  # nothing decoded or built
    assert tree(work) == before  # nothing written, no folder created, no temp file left


@pytest.mark.slow
def test_parents_creates_folders_and_the_written_path_is_printed(work: Path) -> None:
    r = fidkit_cli("stats", "x.npy", "-o", "new/deeper/stats", "--parents", cwd=work)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("wrote new/deeper/stats.npz: n = 30, d = 4")  # .npz appended, as numpy.savez
    assert load(work / "new" / "deeper" / "stats.npz").n == 30
    assert tree(work / "new") == ["deeper", "deeper/stats.npz"]
    r = fidkit_cli("stats", "x.npy", "-o", "s2.npz", "--json", cwd=work)
    assert r.returncode == 0 and json.loads(r.stdout)["output"] == "s2.npz"


# ------------------------------------------------------------------------------ every subcommand's errors


def test_every_subcommand_refuses_bad_input_in_one_line(work: Path) -> None:
    """Each subcommand with a missing file, an empty file, a garbage file and a wrong flag value: exit 2,
    one 'fidkit: ' line, no traceback, nothing written."""
    (work / "empty.npz").write_bytes(b"")
    (work / "garbage.npz").write_bytes(np.random.default_rng(1).bytes(300))
    (work / "garbage.npy").write_bytes(b"\x93NUMPY" + np.random.default_rng(2).bytes(200))
    (work / "garbage.zip").write_bytes(b"PK\x03\x04" + np.random.default_rng(3).bytes(100))
    (work / "garbage.pth").write_bytes(np.random.default_rng(4).bytes(100))
    before = tree(work)

    def with_input(cmd: list[str], bad: str) -> list[str]:
        return [a if a != "IN" else bad for a in cmd]

    commands = {  # IN marks the input that goes bad; each has a wrong value of one of its own flags
        "fid": (["fid", "s.npz", "IN"], ["--batch-size", "0"]),
        "kid": (["kid", "IN", "x.npy"], ["--subset-size", "ten"]),
        "pr": (["pr", "x.npy", "IN"], ["--k", "0"]),
        "is": (["is", "IN"], ["--splits", "-3"]),
        "score": (["score", "IN", "x.npy"], ["--level", "95"]),
        "stats": (["stats", "IN", "-o", "o.npz"], ["--range", "0,2"]),
        "features": (["features", "IN", "-o", "o.npz"], ["--device", "tpu"]),
    }
    garbage = ["garbage.npz", "garbage.npy", "garbage.zip"]  # one kind of garbage each, in turn
    runs: list[list[str]] = []
    for i, (cmd, flag) in enumerate(commands.values()):
        for bad in ("missing.npz", "empty.npz", garbage[i % 3]):
            runs.append(with_input(cmd, bad))
        runs.append(with_input(cmd, "imgs") + flag)
    runs += [["extractors", "--json", "--bogus"],
             ["weights", "where", "no-such-extractor"],
             ["weights", "verify", "empty.npz"], ["weights", "verify", "garbage.pth"],
             ["weights", "convert", "missing.pth", "-o", "w.npz"], ["weights", "convert", "empty.npz", "-o", "w.npz"],
             ["weights", "convert", "garbage.pth", "-o", "w.npz"], ["weights", "convert", "garbage.pth", "--bogus"]]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda argv: fidkit_cli(*argv, cwd=work), runs))
    failures = []
    for argv, r in zip(runs, results, strict=True):
        try:
            assert_one_error(r)
        except AssertionError as exc:
            failures.append(f"fidkit {' '.join(argv)}: {exc}")
    assert not failures, "\n".join(failures)
    assert tree(work) == before


def test_usage_errors_name_the_subcommand_in_one_line(work: Path) -> None:
    r = fidkit_cli("fid", "s.npz", cwd=work)
    assert r.stderr == "fidkit: fid: the following arguments are required: B; see 'fidkit fid --help'\n"
    assert r.returncode == 2
    assert_one_error(fidkit_cli("score", "x.npy", "x.npy", "--metrics", "fid,nope", cwd=work),
                     "score: argument --metrics: unknown metric 'nope'")
    assert_one_error(fidkit_cli("weights", "convert", "x.pth", "--bogus", cwd=work),
                     "fidkit: weights convert: unrecognized arguments: --bogus; see 'fidkit weights convert --help'")


# --------------------------------------------------------------------------------- version, help, --json


def test_version_and_help_for_every_option(work: Path) -> None:
    r = fidkit_cli("--version", cwd=work)
    assert r.returncode == 0 and r.stdout == f"fidkit {fidkit.__version__}\n"
    r = fidkit_cli("score", "--help", cwd=work)
    assert r.returncode == 0
    text = " ".join(r.stdout.split())
    for policy in available_policies():
        assert policy in text.rsplit("--resize POLICY", 1)[1].split("--device")[0]
    assert "(default 100, as fidkit.score, or none when B is a statistics file; 0: point values only)" in text
    # every option of every subcommand says what it does
    missing = []

    def walk(parser: ArgumentParser, prog: str) -> None:
        for action in parser._actions:
            if isinstance(action, _SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{prog} {name}")
            elif action.option_strings and not action.help:
                missing.append(f"{prog} {'/'.join(action.option_strings)}")

    walk(build_parser(), "fidkit")
    assert not missing, missing


@pytest.mark.slow
def test_json_carries_the_warnings(work: Path) -> None:
    s = load(work / "s.npz")
    np.savez(work / "ttur.npz", mu=s.mean, sigma=s.cov)  # a peer's file: provenance unknown
    r = fidkit_cli("fid", "s.npz", "ttur.npz", "--json", cwd=work)
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert any("provenance unknown" in w for w in payload["warnings"])
    assert any("biased upwards" in w for w in payload["warnings"])
    assert len(payload["warnings"]) == r.stderr.count("fidkit: warning: ")  # the same ones, on stderr too
    assert payload["skipped"] == {} and payload["ignored"] == {}


# ------------------------------------------------------------------------- what was computed, on what


def test_text_output_names_the_options_each_value_was_computed_with(work: Path) -> None:
    rng = np.random.default_rng(5)
    np.savez(work / "y.npz", features=rng.standard_normal((30, 4)) * 1.2, logits=rng.standard_normal((30, 10)))
    r = fidkit_cli("score", "x.npy", "y.npz", "--bootstrap", "0", "--splits", "3", "--subset-size", "10",
                   "--k", "4", cwd=work)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "(100 subsets of 10)" in out and "(3 splits" in out
    assert re.search(r"^precision  \d\.\d{4} \(k = 4\)$", out, re.M)
    assert re.search(r"^recall     \d\.\d{4} \(k = 4\)$", out, re.M)
    assert "density    " in out and out.count("(k = 5)") == 2
    assert "CI" not in out and "bootstrap" not in out


def test_result_settings_and_notes_are_printed_when_score_gives_them() -> None:
    args = Namespace(k=3, dc_k=5, kid_subsets=100, is_splits=10, seed=0)
    base = {"fid": 1.0, "kid": {"mean": 0.1, "std": 0.01}, "kid_subset_size": 50, "is": {"mean": 2.0, "std": 0.1},
            "pr": {"precision": 0.94, "recall": 0.5}, "n_real": 50, "n_fake": 50,
            "provenance": {"extractor": "mnist", "resize_policy": "mnist"}}
    plain = _lines(base, args)  # without the keys: what the command line asked for
    assert "precision  0.9400 (k = 3)" in plain
    assert any(line.startswith("IS         2 ± 0.1 (10 splits") for line in plain)
    assert "KID        0.1 ± 0.01 (100 subsets of 50)" in plain
    given = _lines({**base, "settings": {"pr": {"k": 7}, "kid": {"subsets": 20, "subset_size": 40},
                                         "is": {"splits": 5}},
                    "notes": ["KID subsets capped at the smaller sample (50)", "second note"]}, args)
    no_spread = _lines({**base, "kid": {"mean": 0.1, "std": None}}, args)  # subsets that cannot differ
    assert "KID        0.1 (100 subsets of 50)" in no_spread
    assert "precision  0.9400 (k = 7)" in given
    assert any(line.startswith("IS         2 ± 0.1 (5 splits") for line in given)
    assert "KID        0.1 ± 0.01 (20 subsets of 40)" in given
    assert given[-3:-1] == ["note: KID subsets capped at the smaller sample (50)", "note: second note"]


# ----------------------------------------------------------------- files skipped, ignored; progress bars


@pytest.mark.slow
def test_skipped_and_ignored_files_are_counted_and_named(work: Path) -> None:
    imgs = work / "imgs"
    (imgs / "bad.png").write_bytes(b"not a png")
    (imgs / "notes.txt").write_text("labels")
    (imgs / "anim.webm").write_bytes(b"\x1aE\xdf\xa3")
    frames = [Image.fromarray(np.full((28, 28), v, np.uint8)) for v in (40, 200)]
    frames[0].save(imgs / "anim.gif", save_all=True, append_images=frames[1:])  # read: its first frame
    opts = ["--runtime", "numpy", "--no-progress", "--batch-size", "2"]
    before = tree(work)
    r = fidkit_cli("stats", "imgs", "-o", "s2.npz", *opts, cwd=work)
    assert r.returncode == 2 and tree(work) == before
    *info, error = r.stderr.splitlines()
    assert error.startswith("fidkit: imgs/bad.png: cannot decode") and error.endswith(
        "; pass --skip-bad to skip unreadable files")
    assert "fidkit: imgs: ignored 2 files that are not images (.txt, .webm): anim.webm, notes.txt" in info
    r = fidkit_cli("stats", "imgs", "-o", "s2.npz", "--skip-bad", "--json", *opts, cwd=work)
    assert r.returncode == 0, r.stderr
    payload = json.loads(r.stdout)
    assert payload["n"] == 4  # 3 PNGs and the GIF
    assert payload["skipped"] == {"input": ["bad.png"]}
    assert payload["ignored"] == {"input": ["anim.webm", "notes.txt"]}
    assert "fidkit: imgs: skipped 1 file that could not be decoded (--skip-bad; --json lists them): bad.png" \
        in r.stderr.splitlines()


@pytest.mark.slow
def test_progress_bars_name_their_input(work: Path) -> None:
    rng = np.random.default_rng(3)
    np.save(work / "real.npy", rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8))
    np.save(work / "fake.npy", rng.integers(0, 256, (6, 28, 28, 3), dtype=np.uint8))
    # bars are drawn only when stderr is a terminal (a redirected log gets none): give it a pseudo-terminal
    import fcntl
    import pty
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # tqdm sizes bars to it
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the other end closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    proc = subprocess.run([str(FIDKIT), "fid", "real.npy", "fake.npy", "--runtime", "numpy"], cwd=work,
                          stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "FIDKIT_OFFLINE": "1"},
                          timeout=600, check=False)
    os.close(slave)
    reader.join(timeout=10)
    os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "real.npy: mnist (numpy)" in err and "fake.npy: mnist (numpy)" in err
    # and redirected to a file or pipe: no bars at all
    r = fidkit_cli("fid", "real.npy", "fake.npy", "--runtime", "numpy", cwd=work)
    assert r.returncode == 0 and "mnist (numpy)" not in r.stderr and "\r" not in r.stderr, r.stderr
