"""Load Komodo sync TOML files into typed resources, with every fault located at FILE:LINE.

Parsing is ``rtoml`` when installed (Rust; ~10x faster than ``tomllib``, which alone would take
most of the 250 ms budget for 1,000 stacks), else ``tomllib``; ``tomllib`` also reports syntax
errors with their line. Positions come from :mod:`.linemap`, computed only when a finding needs
one. This module checks each value against :mod:`.schema` (so that all
faults are reported, not the first), folds Komodo's aliases, normalises the shapes Komodo accepts
(environment as string or table, ``pre_deploy`` as table or array, env files as strings or
tables), then builds the typed Structs of :mod:`.models`.

Only per-entry checks live here; checks across entries and files are in :mod:`.checks`.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
import tomllib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

try:  # optional fast parser, see parse_toml()
    import rtoml
except ImportError:  # pragma: no cover - tomllib alone is correct, only slower
    rtoml = None  # type: ignore[assignment]

from core.resources import schema as S
from core.resources.gcpause import gc_paused
from core.resources.linemap import LineMap
from core.resources.models import (
    CONFIG_TYPES,
    Finding,
    Resource,
    ResourceSet,
    Severity,
    SourceRef,
)

log = logging.getLogger(__name__)

KeyPath = tuple[str | int, ...]
_TOML_POS = re.compile(r"\(at line (\d+), column \d+\)")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}
_ENV_LINE = re.compile(r"^\s*(?:-\s*)?(?:export\s+)?([A-Za-z_][A-Za-z0-9_.\-]*)\s*[=:]\s?(.*)$")


def collect_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """The TOML files named, directories searched recursively (Komodo's ``resource_path``)."""
    out: list[Path] = []
    for p in paths:
        path = Path(p)
        if path.is_dir():
            out.extend(sorted(f for f in path.rglob("*.toml") if f.is_file()))
        else:
            out.append(path)
    return out


def load_paths(paths: Iterable[str | os.PathLike[str]]) -> ResourceSet:
    """Load every file (directories recursively) into one :class:`ResourceSet`.

    A file that cannot be read is an error finding at line 1; nothing raises for a bad file.
    """
    rs = ResourceSet()
    for path in collect_files(paths):
        name = str(path)
        try:
            text = path.read_text(encoding="utf-8-sig")  # tolerate a BOM
        except (OSError, UnicodeDecodeError) as exc:
            rs.findings.append(
                Finding(name, 1, "error", f"cannot read the file: {exc}", "unreadable")
            )
            continue
        load_text(text, name, rs)
    return rs


def load_text(text: str, file: str, rs: ResourceSet | None = None) -> ResourceSet:
    """Parse one file's text into ``rs`` (a new set when None) and return it."""
    if rs is None:
        rs = ResourceSet()
    rs.files.append(file)
    with gc_paused():
        return _load_text(text, file, rs)


def parse_toml(text: str) -> dict[str, Any]:
    """Parse with ``rtoml`` (Rust, ~10x faster than the pure-Python ``tomllib``) when it is
    installed; ``tomllib`` gives the error message (with line and column) and is the fallback."""
    if rtoml is not None:
        try:
            data: dict[str, Any] = rtoml.loads(text)
            return data
        except ValueError:
            pass  # let tomllib say where and what
    return tomllib.loads(text)


def _load_text(text: str, file: str, rs: ResourceSet) -> ResourceSet:
    try:
        data = parse_toml(text)
    except tomllib.TOMLDecodeError as exc:
        m = _TOML_POS.search(str(exc))
        line = int(m.group(1)) if m else 1
        msg = _TOML_POS.sub("", str(exc)).strip()
        rs.findings.append(
            Finding(file, line, "error", f"not valid TOML: {msg}; fix the syntax", "toml")
        )
        return rs
    linemap = LineMap(text)
    rs.linemaps[file] = linemap
    _Loader(file, linemap, rs).load(data)
    return rs


def suggest(key: str, known: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for a near miss, else ``''``."""
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
    return f' (did you mean "{close[0]}"?)' if close else ""


class _Loader:
    def __init__(self, file: str, linemap: LineMap, rs: ResourceSet) -> None:
        self.file = file
        self.linemap = linemap
        self.rs = rs
        self.entry = ""  # 'stack "web": ' while an entry is being loaded

    # -- reporting ----------------------------------------------------------------------------
    def report(self, severity: Severity, path: KeyPath, message: str, code: str) -> None:
        self.rs.findings.append(
            Finding(self.file, self.linemap.line_of(path), severity, message, code)
        )

    def error(self, path: KeyPath, message: str, code: str = "invalid") -> None:
        self.report("error", path, message, code)

    def warn(self, path: KeyPath, message: str, code: str = "unknown_key") -> None:
        self.report("warning", path, message, code)

    def wrong_type(self, path: KeyPath, code: str, value: Any) -> None:
        self.error(
            path,
            f"{self.entry}{_dotted(path)}: expected {S.TYPE_WORDS[code]}, found"
            f" {_type_word(value)}",
            "type",
        )

    # -- top level ----------------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        for key, value in data.items():
            self.entry = ""
            if key == "tiers":
                self.load_tiers(value)
            elif key in S.UNSUPPORTED_KINDS:
                entries = value if isinstance(value, list) else [value]
                for i, entry in enumerate(entries):
                    name = entry.get("name", "?") if isinstance(entry, dict) else "?"
                    self.warn(
                        (key, i) if isinstance(value, list) else (key,),
                        f'[[{key}]] "{name}": {key} resources are not supported by stackward,'
                        " ignored",
                        "unsupported",
                    )
            elif key in S.ENTRY_KEYS:
                if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
                    self.error(
                        (key,),
                        f"{key}: expected an array of tables, written [[{key}]]; found"
                        f" {_type_word(value)}",
                        "type",
                    )
                    continue
                for i, entry in enumerate(value):
                    self.load_entry(key, i, entry)
            else:
                self.warn(
                    (key,),
                    f'unknown top-level key "{key}"{suggest(key, S.TOP_LEVEL_KEYS)}; it is ignored',
                )

    def load_tiers(self, value: Any) -> None:
        if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
            self.wrong_type(("tiers",), S.STRLIST_STRICT, value)
            return
        src = SourceRef(self.file, ("tiers",))
        if self.rs.tiers_source is not None and self.rs.tiers != value:
            prev = self.rs.tiers_source
            self.error(
                ("tiers",),
                f"tiers: defined differently in {prev.file}:{self.rs.line(prev)}; define tiers"
                " once",
                "duplicate",
            )
            return
        seen: set[str] = set()
        for t in value:
            if t in seen:
                self.error(("tiers",), f'tiers: "{t}" is listed twice', "duplicate")
            seen.add(t)
        self.rs.tiers = list(value)
        self.rs.tiers_source = src

    def load_entry(self, kind: str, index: int, entry: dict[str, Any]) -> None:
        base: KeyPath = (kind, index)
        entry_keys = S.ENTRY_KEYS[kind]
        config_keys = S.CONFIG_KEYS[kind]
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            self.error(
                base,
                f'[[{kind}]] entry {index + 1} has no name: add name = "..."',
                "missing_name",
            )
            return
        self.entry = f'{kind} "{name}": '
        fields: dict[str, Any] = {}
        for key, value in entry.items():
            path = (*base, key)
            if key == "config" and kind != "variable":
                continue
            code = entry_keys.get(key)
            if code is None:
                hint = suggest(key, entry_keys)
                if not hint and key in config_keys:
                    hint = f" (it belongs in [{kind}.config])"
                self.warn(path, f'[[{kind}]] "{name}": unknown key "{key}"{hint}; it is ignored')
                continue
            ok, norm = self.check(value, code, path)
            if ok:
                fields[key] = norm
        raw_config = entry.get("config", {})
        if kind == "variable":
            config_dict: dict[str, Any] = {
                "value": fields.pop("value", ""),
                "is_secret": fields.pop("is_secret", False),
            }
            if "value" not in entry:
                self.warn(
                    base,
                    f'[[variable]] "{name}": no value, so it is empty; add value = "..."',
                    "missing_value",
                )
        elif not isinstance(raw_config, dict):
            self.wrong_type((*base, "config"), S.TABLE, raw_config)
            config_dict = {}
        else:
            config_dict = self.load_config(kind, name, base, raw_config, entry_keys)
        on_drift = fields.get("on_drift")
        if on_drift is not None and on_drift not in S.ON_DRIFT_VALUES:
            self.error(
                (*base, "on_drift"),
                f'on_drift: "{on_drift}" is not one of {", ".join(S.ON_DRIFT_VALUES)}',
                "value",
            )
            fields.pop("on_drift")
        try:
            config = msgspec.convert(config_dict, CONFIG_TYPES[kind])
        except msgspec.ValidationError as exc:  # a gap between schema and models; stay usable
            self.error((*base, "config"), f'[{kind}.config] of "{name}": {exc}', "type")
            config = CONFIG_TYPES[kind]()
        resource = Resource(
            kind=kind,
            name=name,
            config=config,
            source=SourceRef(self.file, base),
            description=fields.get("description", ""),
            tags=fields.get("tags", []),
            deploy=fields.get("deploy", False),
            after=fields.get("after", []),
            wait_for=fields.get("wait_for", []),
            tier=fields.get("tier", ""),
            on_drift=fields.get("on_drift", ""),
        )
        prev = self.rs.resources.get((kind, name))
        if prev is not None:
            self.error(
                (*base, "name"),
                f'duplicate {kind} name "{name}": already defined at'
                f" {prev.source.file}:{self.rs.line(prev.source)}; names must be unique within"
                " a type",
                "duplicate",
            )
            return
        self.rs.resources[(kind, name)] = resource

    def load_config(
        self,
        kind: str,
        name: str,
        base: KeyPath,
        raw: dict[str, Any],
        entry_keys: dict[str, str],
    ) -> dict[str, Any]:
        known = S.CONFIG_KEYS[kind]
        aliases = S.ALIASES.get(kind, {})
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            path = (*base, "config", key)
            canon = aliases.get(key, key)
            code = known.get(canon)
            if code is None:
                hint = suggest(key, [*known, *aliases])
                if not hint and key in entry_keys:
                    hint = f" (it belongs in the [[{kind}]] entry, not in its config)"
                self.warn(
                    path, f'[{kind}.config] of "{name}": unknown key "{key}"{hint}; it is ignored'
                )
                continue
            if canon in spelled:
                self.error(
                    path,
                    f'[{kind}.config] of "{name}": "{key}" and "{spelled[canon]}" are the same'
                    " field; keep one",
                    "duplicate",
                )
                continue
            spelled[canon] = key
            ok, norm = self.check(value, code, path)
            if ok:
                out[canon] = norm
        return out

    # -- values -------------------------------------------------------------------------------
    def check(self, value: Any, code: str, path: KeyPath) -> tuple[bool, Any]:  # noqa: C901
        if code == S.ANY:
            return True, value
        if code == S.STR:
            if isinstance(value, str):
                return True, value
        elif code == S.BOOL:
            if isinstance(value, bool):
                return True, value
        elif code == S.INT:
            if isinstance(value, int) and not isinstance(value, bool):
                return True, value
        elif code == S.NUMBER:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True, float(value)
        elif code == S.STRLIST_STRICT:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return True, value
        elif code == S.STRLIST:
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return True, value
            if isinstance(value, str):
                parts = (p.strip() for p in re.split(r"[\n,]", value))
                return True, [p for p in parts if p and not p.startswith("#")]
        elif code == S.ENV:
            return self.check_env(value, path)
        elif code == S.COMMAND:
            return self.check_command(value, path)
        elif code == S.ENV_FILES:
            return self.check_file_list(value, path, S.ENV_FILE_KEYS, code)
        elif code == S.CONFIG_FILES:
            return self.check_file_list(value, path, S.CONFIG_FILE_KEYS, code)
        elif code == S.HEALTH:
            if isinstance(value, dict):
                return True, self.check_table(value, path, S.HEALTH_KEYS, "health")
        elif code == S.DURATION:
            if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
                return True, value
            if isinstance(value, str):
                m = _DURATION.match(value)
                if m:
                    return True, int(m.group(1)) * _UNIT[m.group(2)]
        elif code == S.TABLE_LIST:
            if isinstance(value, list) and all(isinstance(v, dict) for v in value):
                return True, value
        elif code == S.STAGES:
            return self.check_stages(value, path)
        self.wrong_type(path, code, value)
        return False, None

    def check_table(
        self, value: dict[str, Any], path: KeyPath, keys: dict[str, str], what: str
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in value.items():
            sub = (*path, k)
            code = keys.get(k)
            if code is None:
                self.warn(
                    sub, f'{_dotted(path)}: unknown key "{k}"{suggest(k, keys)}; it is ignored'
                )
                continue
            ok, norm = self.check(v, code, sub)
            if ok:
                out[k] = norm
        return out

    def check_env(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        if isinstance(value, dict):
            lines = []
            for k, v in value.items():
                if isinstance(v, dict | list):
                    self.error(
                        (*path, k),
                        f"{_dotted(path)}.{k}: an environment value must be a string, number or"
                        " boolean",
                        "type",
                    )
                    continue
                lines.append(f"{k}={_env_scalar(v)}")
            return True, "\n".join(lines)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            value = "\n".join(value)
        if not isinstance(value, str):
            self.wrong_type(path, S.ENV, value)
            return False, None
        out = []
        for n, raw in enumerate(value.splitlines(), start=1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            m = _ENV_LINE.match(line)
            if m is None:
                self.error(
                    path,
                    f"{_dotted(path)}: line {n} of the value is not KEY=value: {line[:40]!r}",
                    "env",
                )
                continue
            val = m.group(2).strip()
            out.append(f"{m.group(1)}={val}")
        return True, "\n".join(out)

    def check_command(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        items = value if isinstance(value, list) else [value]
        if not all(isinstance(v, dict) for v in items):
            self.wrong_type(path, S.COMMAND, value)
            return False, None
        out = []
        for i, item in enumerate(items):
            sub = (*path, i) if isinstance(value, list) else path
            t = self.check_table(item, sub, S.COMMAND_KEYS, "command")
            if t.get("command", "").strip() or t.get("path", ""):
                out.append(t)
        return True, out

    def check_file_list(
        self, value: Any, path: KeyPath, keys: dict[str, str], code: str
    ) -> tuple[bool, Any]:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            self.wrong_type(path, code, value)
            return False, None
        out = []
        for i, item in enumerate(value):
            sub = (*path, i)
            if isinstance(item, str):
                out.append({"path": item})
            elif isinstance(item, dict):
                t = self.check_table(item, sub, keys, "file")
                if "path" not in t:
                    self.error(sub, f'{_dotted(path)}[{i}]: add path = "..."', "missing_path")
                    continue
                req = t.get("requires")
                if req is not None and req not in S.CONFIG_FILE_REQUIRES:
                    self.error(
                        sub,
                        f'{_dotted(path)}[{i}].requires: "{req}" is not one of'
                        f" {', '.join(S.CONFIG_FILE_REQUIRES)}",
                        "value",
                    )
                    t.pop("requires")
                out.append(t)
            else:
                self.wrong_type(sub, code, item)
        return True, out

    def check_stages(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.wrong_type(path, S.STAGES, value)
            return False, None
        stages = []
        for i, stage in enumerate(value):
            st = self.check_table(stage, (*path, i), S.STAGE_KEYS, "stage")
            execs = []
            for j, ex in enumerate(st.get("executions", [])):
                epath = (*path, i, "executions", j)
                e = self.check_table(ex, epath, S.EXECUTION_KEYS, "execution")
                inner = e.get("execution", {})
                if not isinstance(inner, dict) or not isinstance(inner.get("type", ""), str):
                    self.error(
                        epath,
                        f'{_dotted(epath)}: execution must be {{type = "...", params = {{...}}}}',
                        "type",
                    )
                    continue
                params = inner.get("params", {})
                e["execution"] = {
                    "type": inner.get("type", "None"),
                    "params": params if isinstance(params, dict) else {},
                }
                execs.append(e)
            st["executions"] = execs
            stages.append(st)
        return True, stages


def _dotted(path: Sequence[str | int]) -> str:
    out = ""
    for p in path[2:] if len(path) > 2 and isinstance(path[1], int) else path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out


def _type_word(value: Any) -> str:
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f'a string ("{value[:30]}")'
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _env_scalar(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)
