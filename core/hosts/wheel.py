"""A wheel of the running stackward, made from its own source files.

The host gets exactly the code that runs here (a checkout, an editable or a regular install),
without a build backend, network or build isolation: stackward is pure Python, so its wheel is
a zip of ``protocol``, ``core`` and ``periphery`` plus the ``.dist-info`` files (PEP 427).
The name, version and dependencies come from the installed distribution's metadata.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

from core.exceptions import HostInstallError

DISTRIBUTION = "stackward"
PACKAGES = ("protocol", "core", "periphery")
SOURCE_ROOT = Path(__file__).resolve().parents[2]
_EPOCH = (1980, 1, 1, 0, 0, 0)  # fixed timestamps: the same tree gives the same bytes


@dataclass(frozen=True)
class Wheel:
    filename: str
    data: bytes


def _record_hash(data: bytes) -> str:
    digest = hashlib.sha256(data).digest()
    return "sha256=" + base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def _metadata_text(name: str, version: str) -> str:
    meta = importlib.metadata.metadata(name)
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    for field in ("Summary", "Requires-Python"):
        value = meta[field] if field in meta else None
        if value:
            lines.append(f"{field}: {value}")
    for requirement in importlib.metadata.requires(name) or []:
        if "extra ==" not in requirement:  # the test tools stay behind
            lines.append(f"Requires-Dist: {requirement}")
    return "\n".join(lines) + "\n"


def source_files(root: Path = SOURCE_ROOT) -> list[Path]:
    """The package files to ship, relative to ``root`` (no caches, no compiled files)."""
    files: list[Path] = []
    for package in PACKAGES:
        base = root / package
        if not (base / "__init__.py").is_file():
            raise HostInstallError(f"cannot find the {package!r} package under {root}")
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix != ".pyc":
                files.append(rel)
    return files


def build_wheel(root: Path = SOURCE_ROOT) -> Wheel:
    try:
        version = importlib.metadata.version(DISTRIBUTION)
        metadata = _metadata_text(DISTRIBUTION, version)
    except importlib.metadata.PackageNotFoundError as exc:
        raise HostInstallError(
            "stackward's distribution metadata is missing: install it (pip install -e .)"
        ) from exc
    dist_info = f"{DISTRIBUTION}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [
        (rel.as_posix(), (root / rel).read_bytes()) for rel in source_files(root)
    ]
    entries += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: stackward host install\n"
            b"Root-Is-Purelib: true\nTag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", b"[console_scripts]\nstackward = core.cli:main\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, _EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data)
    return Wheel(f"{DISTRIBUTION}-{version}-py3-none-any.whl", buffer.getvalue())
