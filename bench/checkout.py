"""Checkout benchmark: moving a stack to a new commit in its fixed directory (what a deploy does
now, as Komodo's fixed clone) against exporting the whole commit into a new directory (what it
did before: one directory per commit), same repository, same mirror, one run.

The repository has ``--files`` files (4 KiB each, in 50 directories); each new commit changes
one file. Both ways start from a warm mirror that already has every commit, so only putting the
files in place is measured. Target: the fixed directory at most 0.5x the export's time.
Run: ``python bench/checkout.py [--files N] [--rounds N]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from periphery.ops.checkout import checkout, ensure_mirror  # noqa: E402
from periphery.process import discard  # noqa: E402


def git(*args: str, cwd: Path) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=b", "-c", "user.email=b@example.invalid", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def make_repo(base: Path, files: int, rounds: int) -> tuple[str, list[str]]:
    work, bare = base / "work", base / "origin.git"
    git("init", "-q", "--bare", str(bare), cwd=base)
    git("init", "-q", "-b", "main", str(work), cwd=base)
    blob = "x" * 4095 + "\n"
    for i in range(files):
        path = work / f"dir{i % 50}" / f"file{i}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text(blob)
    git("add", "-A", cwd=work)
    git("commit", "-q", "-m", "c0", cwd=work)
    commits = [git("rev-parse", "HEAD", cwd=work)]
    for r in range(rounds):
        (work / "dir0" / "file0.txt").write_text(f"round {r}\n")
        git("commit", "-q", "-am", f"c{r + 1}", cwd=work)
        commits.append(git("rev-parse", "HEAD", cwd=work))
    git("push", "-q", f"file://{bare}", "main", cwd=work)
    return f"file://{bare}", commits


def export(mirror: Path, sha: str, dest: Path) -> None:
    """The former checkout: the whole commit written into a new directory (private index)."""
    dest.mkdir()
    index = dest.with_name(dest.name + ".index")
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}
    for args in (("read-tree", sha), (f"--work-tree={dest}", "checkout-index", "--all", "--force")):
        subprocess.run(["git", f"--git-dir={mirror}", *args], env=env, check=True)
    index.unlink()


async def main(files: int, rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-checkout-") as tmp:
        base = Path(tmp)
        url, commits = make_repo(base, files, rounds)
        root = base / "root"
        root.mkdir()
        mirror, _ = await ensure_mirror(root, url, commits[-1], discard)
        await checkout(root, url, commits[0], "fixed", discard)  # the first one is a full write
        fixed, exported = [], []
        for n, sha in enumerate(commits[1:], start=1):
            started = time.perf_counter()
            await checkout(root, url, sha, "fixed", discard)
            fixed.append(time.perf_counter() - started)
            started = time.perf_counter()
            export(mirror, sha, base / f"commit-{n}")
            exported.append(time.perf_counter() - started)
            shutil.rmtree(base / f"commit-{n}")
        f, e = statistics.median(fixed) * 1000, statistics.median(exported) * 1000
        print(f"checkout of a new commit, {files} files, 1 changed (median of {rounds}):")
        print(f"  fixed directory (read-tree -u): {f:8.1f} ms")
        print(f"  export into a new directory:    {e:8.1f} ms  (baseline)")
        print(f"  ratio {f / e:.2f}  (target <= 0.5)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    anyio.run(main, args.files, args.rounds)
