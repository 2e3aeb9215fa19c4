"""Plan benchmark: load, validate and plan generated resource files of 100, 1,000, 10,000 stacks.

Each file has servers, a swarm, variables, three tiers, ``after`` chains, multi-line
environments with ``[[VAR]]`` references and ``pre_deploy`` tables, like the corpus. Timed per
size, best of N runs:

- ``tomllib``: a bare ``tomllib.loads`` of the same text (the baseline);
- ``stackward``: load (parse + per-entry checks + typed models) + cross checks + plan against a
  stored state holding the same resources with 1% of stacks changed (a realistic push);
- ``+lines``: the same with the line map built too (what a file with findings costs).

The loader parses with ``rtoml`` when installed (a dependency), else ``tomllib``; the baseline is
always ``tomllib``, the parser Python ships. Targets: 1,000 stacks in ≤ 250 ms, and 10× the
stacks in ≤ 12× the time.
Run: ``python bench/plan.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.plan.canonical import canonical, content_hash  # noqa: E402
from core.plan.models import StoredResource  # noqa: E402
from core.plan.planner import make_plan  # noqa: E402
from core.resources import check  # noqa: E402
from core.resources.loader import load_text  # noqa: E402

TIERS = ["infrastructure", "platform", "application"]


def generate(n: int, variant: str = "") -> str:
    out = [f"tiers = {TIERS!r}\n".replace("'", '"')]
    for s in range(max(1, n // 50)):
        out.append(
            f'[[server]]\nname = "host{s}"\ndescription = "docker host {s}"\n'
            f'tags = ["lab"]\n[server.config]\naddress = "wss://10.0.{s // 250}.{s % 250}'
            f':8120"\nenabled = true\nregion = "home"\n'
        )
    out.append('[[swarm]]\nname = "main"\n[swarm.config]\nservers = ["host0"]\n')
    for v in range(20):
        out.append(
            f'[[variable]]\nname = "VAR{v}"\nvalue = "value-{v}"\n'
            + ("is_secret = true\n" if v % 5 == 0 else "")
        )
    for i in range(n):
        tier = TIERS[0 if i < n // 10 else 1 if i < n // 3 else 2]
        after = f'after = ["stack{i - 1}"]\n' if i % 10 and tier == TIERS[2] else ""
        target = 'swarm = "main"' if i % 3 else f'server = "host{i % max(1, n // 50)}"'
        run_dir = f"stacks/app{i}{variant if i % 100 == 0 else ''}"
        out.append(
            f'[[stack]]\nname = "stack{i}"\ndescription = "stack number {i}"\n'
            f'tags = ["lab", "{tier}"]\ndeploy = true\ntier = "{tier}"\n{after}'
            f"[stack.config]\n{target}\n"
            f'repo = "owner/homelab"\nbranch = "main"\ngit_account = "owner"\n'
            f'run_directory = "{run_dir}"\nfile_paths = ["compose.yaml"]\n'
            f'additional_env_files = ["../global.env"]\nwebhook_enabled = true\n'
            f"pre_deploy.command = \"sh -c './render-env.sh'\"\n"
            f'environment = """\nTZ = [[VAR{i % 20}]]\nPUID=1000\nPGID=1000\n'
            f'DOMAIN=app{i}.example.org\n"""\n'
        )
    return "\n".join(out)


def best_of(runs: int, fn: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer runs")
    args = ap.parse_args()
    runs = 3 if args.quick else 7
    rows = []
    for n in (100, 1_000, 10_000):
        old_text, new_text = generate(n), generate(n, variant="-v2")
        old = check(load_text(old_text, "old.toml"))
        assert not old.errors, [f.format() for f in old.errors[:5]]
        state = {}
        for key, res in old.resources.items():
            c = canonical(res)
            state[key] = StoredResource(res.kind, res.name, "bench", c, content_hash(c))

        def stackward(
            lines: bool = False,
            text: str = new_text,
            state: dict[tuple[str, str], StoredResource] = state,
        ) -> None:
            rs = check(load_text(text, "new.toml"))
            if lines:
                for lm in rs.linemaps.values():
                    lm.line_of(("stack", 0))
            plan = make_plan(sync="bench", desired=rs, state=state, base_revision=1)
            assert plan.changes and not rs.errors

        base = best_of(runs, lambda t=new_text: tomllib.loads(t))
        ours = best_of(runs, stackward)
        with_lines = best_of(runs, lambda: stackward(lines=True))
        rows.append((n, len(new_text.splitlines()), base, ours, with_lines))
    from core.resources import loader

    print(f"resource parser: {'rtoml' if loader.rtoml is not None else 'tomllib'}")
    print(
        f"{'stacks':>7} {'lines':>8} {'tomllib':>10} {'stackward':>10} {'ratio':>6} {'+lines':>10}"
    )
    for n, lines, base, ours, wl in rows:
        print(
            f"{n:>7} {lines:>8} {base * 1000:>8.1f}ms {ours * 1000:>8.1f}ms"
            f" {ours / base:>5.2f}x {wl * 1000:>8.1f}ms"
        )
    t1k, t10k = rows[1][3], rows[2][3]
    scale = t10k / t1k
    ok1 = t1k <= 0.250
    ok2 = scale <= 12
    print(f"1,000 stacks: {t1k * 1000:.1f} ms (target <= 250 ms) {'OK' if ok1 else 'MISSED'}")
    print(
        f"10x stacks: {scale:.2f}x the time (target <= 12x) {'OK' if ok2 else 'MISSED'};"
        f" bare tomllib in the same run: {rows[2][2] / rows[1][2]:.2f}x"
    )
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
