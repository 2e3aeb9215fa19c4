"""The wheel carries the dashboard: every file of core/web/static is in a freshly built wheel
(package data), so an installed core serves the page with nothing fetched at run time."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_a_built_wheel_contains_every_dashboard_asset(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
         "-w", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("stackward-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    static = REPO / "core" / "web" / "static"
    assets = sorted(p.relative_to(REPO).as_posix() for p in static.rglob("*") if p.is_file())
    assert "core/web/static/index.html" in assets and len(assets) >= 10
    assert [a for a in assets if a not in names] == []
