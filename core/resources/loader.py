"""Load Komodo sync TOML files into typed resources, with every fault located at FILE:LINE.

Parsing is ``rtoml`` when installed (Rust; ~10x faster than ``tomllib``, which alone would take
most of the 250 ms budget for 1,000 stacks), else ``tomllib``; ``tomllib`` also reports syntax
errors with their line. Positions come from :mod:`.linemap`, computed only when a finding needs
one. This module checks each value against :mod:`.schema` (so that all faults are reported, not
the first), folds Komodo's aliases, reads the shapes as Komodo's deserializers do (environment
as a string or an array of ``{variable, value}``, kept as Komodo keeps it; ``pre_deploy`` one
table; env files as strings or tables; string lists split as ``parse_string_list`` splits them),
reports the shapes Komodo's sync rejects as errors that say so, warns for the fields of
:mod:`.support` written (read, not acted on), then builds the typed Structs of :mod:`.models`.

Only per-entry checks live here; checks across entries and files are in :mod:`.checks`.
"""

from __future__ import annotations

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

from core.resources import envtext, support
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
from core.resources.suggest import did_you_mean

log = logging.getLogger(__name__)

KeyPath = tuple[str | int, ...]
_TOML_POS = re.compile(r"\(at line (\d+), column \d+\)")
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h)?\s*$")
_UNIT = {"s": 1, "m": 60, "h": 3600, None: 1}
_END_OF_DOCUMENT = "at end of document"
_SAMPLE = 8192  # bytes looked at for a NUL (a binary file)


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

    A file that cannot be read, or is not text (a NUL byte, not UTF-8), is an error finding at
    line 1 with code ``unreadable`` (the CLI exits 2 on it); nothing raises for a bad file.
    """
    rs = ResourceSet()
    for path in collect_files(paths):
        name = str(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            why = exc.strerror or str(exc)
            rs.findings.append(
                Finding(name, 1, "error", f"cannot read the file: {why}", "unreadable")
            )
            continue
        text = _decode(data)
        if text is None:
            rs.findings.append(
                Finding(
                    name,
                    1,
                    "error",
                    "not a text file (binary, or not UTF-8): give a Komodo resource file (TOML)",
                    "unreadable",
                )
            )
            continue
        load_text(text, name, rs)
    return rs


def _decode(data: bytes) -> str | None:
    """UTF-8 text (a BOM tolerated), or None for binary data."""
    if b"\x00" in data[:_SAMPLE]:
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None


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
        text_of = str(exc)
        m = _TOML_POS.search(text_of)
        line = int(m.group(1)) if m else 1
        msg = _TOML_POS.sub("", text_of).strip()
        if _END_OF_DOCUMENT in text_of:
            opened = LineMap(text).unterminated()
            if opened is not None:
                line = opened
                msg = msg.replace(f"({_END_OF_DOCUMENT})", "").strip()
                msg = f"{msg}: it opens here and is never closed"
        rs.findings.append(
            Finding(file, line, "error", f"not valid TOML: {msg}; fix the syntax", "toml")
        )
        return rs
    linemap = LineMap(text)
    rs.linemaps[file] = linemap
    _Loader(file, linemap, rs).load(data)
    return rs


def suggest(key: str, known: Iterable[str]) -> str:
    """``' (did you mean "x"?)'`` for a near miss, else ``''`` (see :mod:`.suggest`)."""
    return did_you_mean(key, known)


class _Loader:
    def __init__(self, file: str, linemap: LineMap, rs: ResourceSet) -> None:
        self.file = file
        self.linemap = linemap
        self.rs = rs
        self.entry = ""  # 'stack "web": ' while an entry is being loaded
        self.current: tuple[str, str] | None = None  # (kind, name) of that entry
        self.spelled: dict[str, str] = {}  # canonical config key -> as written, of that entry

    # -- reporting ----------------------------------------------------------------------------
    def report(
        self, severity: Severity, path: KeyPath, message: str, code: str, key: str = ""
    ) -> None:
        self.report_at(self.linemap.line_of(path), severity, message, code, key)

    def report_at(
        self, line: int, severity: Severity, message: str, code: str, key: str = ""
    ) -> None:
        self.rs.findings.append(Finding(self.file, line, severity, message, code, key))
        if severity == "error" and self.current is not None:
            self.rs.faulty.add(self.current)

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

    def rejected(self, path: KeyPath, what: str, instead: str) -> None:
        """A shape stackward could read but Komodo does not: its sync fails on the file."""
        self.error(
            path,
            f"{self.entry}{_dotted(path)}: {what}: Komodo does not accept this (its sync fails"
            f" to read the file); {instead}",
            "komodo_rejects",
        )

    def inert(self, path: KeyPath, entry: support.Inert) -> None:
        field = ".".join(p for p in path[3:] if isinstance(p, str)) or entry.key
        self.report("warning", path, f"{self.entry}{field} {entry.instead}", "inert", entry.key)
        if self.current is not None:
            self.rs.inert.setdefault(self.current, []).append(entry.key)

    # -- top level ----------------------------------------------------------------------------
    def load(self, data: dict[str, Any]) -> None:
        seen: dict[str, str] = {}
        for key, value in data.items():
            self.entry = ""
            self.current = None
            kind = S.KIND_ALIASES.get(key, key)
            if kind in seen and kind != "tiers":
                self.error(
                    (key,),
                    f'"{key}" and "{seen[kind]}" are the same table for Komodo; keep one',
                    "duplicate",
                )
                continue
            seen[kind] = key
            if kind == "tiers":
                self.load_tiers(value)
            elif kind in S.UNSUPPORTED_KINDS:
                entries = value if isinstance(value, list) else [value]
                for i, entry in enumerate(entries):
                    name = entry.get("name", "?") if isinstance(entry, dict) else "?"
                    self.warn(
                        (key, i) if isinstance(value, list) else (key,),
                        f'[[{key}]] "{name}": {kind} resources are not supported by stackward,'
                        " ignored",
                        "unsupported",
                    )
            elif kind in S.ENTRY_KEYS:
                if not isinstance(value, list) or not all(isinstance(e, dict) for e in value):
                    self.error(
                        (key,),
                        f"{key}: expected an array of tables, written [[{key}]]; found"
                        f" {_type_word(value)}",
                        "type",
                    )
                    continue
                for i, entry in enumerate(value):
                    self.load_entry(kind, key, i, entry)
            else:
                self.warn(
                    (key,),
                    f'unknown top-level key "{key}"{did_you_mean(key, S.TOP_LEVEL_KEYS)}; it is'
                    " ignored",
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

    def load_entry(self, kind: str, written: str, index: int, entry: dict[str, Any]) -> None:
        base: KeyPath = (written, index)
        entry_keys = S.ENTRY_KEYS[kind]
        config_keys = S.CONFIG_KEYS[kind]
        name = entry.get("name")
        if not isinstance(name, str) or not name.strip():
            self.error(
                base,
                f'[[{written}]] entry {index + 1} has no name: add name = "..."',
                "missing_name",
            )
            return
        self.entry = f'{kind} "{name}": '
        self.current = (kind, name)
        fields: dict[str, Any] = {}
        for key, value in entry.items():
            path = (*base, key)
            if key == "config" and kind != "variable":
                continue
            code = entry_keys.get(key)
            if code is None:
                if key in config_keys or key in S.ALIASES.get(kind, {}):
                    hint = f" (it belongs in [{written}.config])"
                else:
                    hint = did_you_mean(key, entry_keys)
                self.warn(path, f'[[{written}]] "{name}": unknown key "{key}"{hint}; it is ignored')
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
            config_dict = self.load_config(kind, written, name, base, raw_config, entry_keys)
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
            self.error((*base, "config"), f'[{written}.config] of "{name}": {exc}', "type")
            config = CONFIG_TYPES[kind]()
        if kind != "variable":
            self.check_inert(kind, base, config_dict, self.spelled, config)
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
        written: str,
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
                if key in entry_keys:
                    hint = f" (it belongs on the [[{written}]] entry, not in its config)"
                else:
                    hint = did_you_mean(key, [*known, *aliases])
                self.warn(
                    path,
                    f'[{written}.config] of "{name}": unknown key "{key}"{hint}; it is ignored',
                )
                continue
            if canon in spelled:
                self.error(
                    path,
                    f'[{written}.config] of "{name}": "{key}" and "{spelled[canon]}" are the same'
                    " field; keep one",
                    "duplicate",
                )
                continue
            spelled[canon] = key
            ok, norm = self.check(value, code, path)
            if ok:
                out[canon] = norm
        self.spelled = spelled
        return out

    def check_inert(
        self,
        kind: str,
        base: KeyPath,
        out: dict[str, Any],
        spelled: dict[str, str],
        config: Any,
    ) -> None:
        """A warning for each field written that asks for what stackward does not do
        (:mod:`.support`)."""
        for entry in support.by_kind(kind):
            field = entry.path[0]
            if field not in out:
                continue
            value = out[field]
            default = _defaults(kind).get(field)
            path: KeyPath = (*base, "config", spelled[field])
            for sub in entry.path[1:]:
                inner = value[0] if isinstance(value, list) and value else value
                if not isinstance(inner, dict) or sub not in inner:
                    break
                value, default, path = inner[sub], None, (*path, sub)
            else:
                if support.applies(entry, value, default, config):
                    self.inert(path, entry)

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
                return True, parse_string_list(value)
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
                return True, self.check_table(value, path, S.HEALTH_KEYS)
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
        elif code == S.WINDOWS:
            return self.check_windows(value, path)
        elif code == S.STAGES:
            return self.check_stages(value, path)
        elif code == S.ENDPOINT:
            return self.check_endpoint(value, path)
        elif code == S.TARGETS:
            return self.check_targets(value, path)
        self.wrong_type(path, code, value)
        return False, None

    def check_table(
        self,
        value: dict[str, Any],
        path: KeyPath,
        keys: dict[str, str],
        aliases: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for k, v in value.items():
            sub = (*path, k)
            canon = (aliases or {}).get(k, k)
            code = keys.get(canon)
            if code is None:
                hint = did_you_mean(k, [*keys, *(aliases or {})])
                self.warn(sub, f'{_dotted(path)}: unknown key "{k}"{hint}; it is ignored')
                continue
            if canon in spelled:
                self.error(
                    sub,
                    f'{_dotted(path)}: "{k}" and "{spelled[canon]}" are the same field; keep one',
                    "duplicate",
                )
                continue
            spelled[canon] = k
            ok, norm = self.check(v, code, sub)
            if ok:
                out[canon] = norm
        return out

    def check_env(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        """Komodo's ``env_vars_deserializer``: a string, or an array of ``{variable, value}``;
        the result is the string Komodo keeps."""
        if isinstance(value, dict):
            self.rejected(
                path,
                "a table",
                'write the variables as a multi-line string: environment = """ then one'
                ' KEY = value a line, then """',
            )
            return False, None
        if isinstance(value, list):
            return self.check_env_pairs(value, path)
        if not isinstance(value, str):
            self.wrong_type(path, S.ENV, value)
            return False, None
        text = envtext.from_string(value)
        span = text.count("\n") + 1
        for item in envtext.parse_lines(text):
            if isinstance(item, envtext.EnvProblem):
                line = self.linemap.find(path, re.compile(re.escape(item.text)), span)
                self.report_at(
                    line,
                    "error",
                    f"{self.entry}{_dotted(path)}: {item.text[:60]!r} is not an assignment (no"
                    " '=' or ':'); Komodo's deploy fails on it: write KEY = value, or start the"
                    " line with # to make it a comment",
                    "env",
                )
        return True, text

    def check_env_pairs(self, value: list[Any], path: KeyPath) -> tuple[bool, Any]:
        pairs: list[tuple[str, str]] = []
        ok = True
        for i, item in enumerate(value):
            sub = (*path, i)
            if not isinstance(item, dict):
                self.rejected(
                    sub,
                    f"an array item that is {_type_word(item)}",
                    'an array holds tables {variable = "KEY", value = "..."}; or write a'
                    " multi-line string of KEY = value lines",
                )
                ok = False
                continue
            t = self.check_table(item, sub, S.ENV_VAR_KEYS)
            missing = [k for k in S.ENV_VAR_KEYS if k not in t]
            if missing:
                self.rejected(sub, f"no {' and no '.join(missing)}", "give both variable and value")
                ok = False
                continue
            pairs.append((t["variable"], t["value"]))
        return ok, envtext.from_pairs(pairs)

    def check_command(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        """Komodo's ``SystemCommand``: one table ``{path, command, shell_mode}``; a command
        that is empty after trimming its end is none (``SystemCommand::is_none``)."""
        if isinstance(value, list):
            self.rejected(
                path,
                "an array of commands",
                "write one table {path, command} and put the commands in one multi-line"
                " command, a line each",
            )
            return False, None
        if not isinstance(value, dict):
            self.wrong_type(path, S.COMMAND, value)
            return False, None
        t = self.check_table(value, path, S.COMMAND_KEYS)
        return True, ([t] if t.get("command", "").strip() else [])

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
                t = self.check_table(item, sub, keys)
                if "path" not in t:
                    self.error(sub, f'{_dotted(path)}[{i}]: add path = "..."', "missing_path")
                    continue
                req = t.get("requires")
                if req is not None:
                    canon = S.CONFIG_FILE_REQUIRES.get(req)
                    if canon is None:
                        self.error(
                            sub,
                            f'{_dotted(path)}[{i}].requires: "{req}" is not one of'
                            f" {', '.join(sorted(set(S.CONFIG_FILE_REQUIRES.values())))}",
                            "value",
                        )
                        t.pop("requires")
                    else:
                        t["requires"] = canon
                out.append(t)
            else:
                self.wrong_type(sub, code, item)
        return True, out

    def check_windows(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.wrong_type(path, S.WINDOWS, value)
            return False, None
        return True, [
            self.check_table(w, (*path, i), S.MAINTENANCE_WINDOW_KEYS) for i, w in enumerate(value)
        ]

    def check_endpoint(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        """Komodo's ``AlerterEndpoint`` (``#[serde(tag = "type", content = "params")]``): a
        ``type`` it knows, its ``params`` a table (``url``; ``email`` for Ntfy)."""
        if not isinstance(value, dict):
            self.wrong_type(path, S.ENDPOINT, value)
            return False, None
        out: dict[str, Any] = {}
        kind = value.get("type")
        if kind is None:
            self.rejected(
                path,
                "an endpoint without a type",
                'add type = "Ntfy" (or "Discord", "Slack", "Custom")',
            )
            return False, None
        if not isinstance(kind, str) or kind not in S.ENDPOINT_TYPES:
            self.rejected(
                (*path, "type"),
                f"endpoint type {kind!r}{did_you_mean(str(kind), S.ENDPOINT_TYPES)}",
                "use one of " + ", ".join(S.ENDPOINT_TYPES),
            )
            return False, None
        out["type"] = kind
        for key, item in value.items():
            sub = (*path, key)
            if key == "type":
                continue
            if key != "params":
                self.warn(sub, f'{_dotted(path)}: unknown key "{key}"; it is ignored')
                continue
            if not isinstance(item, dict):
                self.wrong_type(sub, S.TABLE, item)
                continue
            out["params"] = self.check_table(item, sub, S.ENDPOINT_PARAM_KEYS)
        return True, out

    def check_targets(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        """Komodo's ``ResourceTarget`` list: ``[{type = "Stack", id = "web"}, ...]``."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.wrong_type(path, S.TARGETS, value)
            return False, None
        out = []
        for i, item in enumerate(value):
            sub = (*path, i)
            t = self.check_table(item, sub, S.TARGET_KEYS)
            if "type" not in t or "id" not in t:
                self.rejected(
                    sub, "a target without type or id", 'write {type = "Stack", id = "NAME"}'
                )
                continue
            if t["type"] not in S.TARGET_TYPES:
                self.rejected(
                    sub,
                    f"target type {t['type']!r}{did_you_mean(t['type'], S.TARGET_TYPES)}",
                    "use one of " + ", ".join(S.TARGET_TYPES),
                )
                continue
            out.append(t)
        return True, out

    def check_stages(self, value: Any, path: KeyPath) -> tuple[bool, Any]:
        """Komodo's ``ProcedureStage`` (``name`` required, ``execution`` an alias of
        ``executions``) and ``EnabledExecution`` (``execution`` required)."""
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            self.wrong_type(path, S.STAGES, value)
            return False, None
        stages = []
        for i, stage in enumerate(value):
            spath = (*path, i)
            st = self.check_table(stage, spath, S.STAGE_KEYS, S.STAGE_ALIASES)
            if "name" not in st:
                self.rejected(spath, "a stage without a name", 'add name = "..."')
            spelled = next((k for k in S.STAGE_ALIASES if k in stage), "executions")
            execs = []
            for j, ex in enumerate(st.get("executions", [])):
                epath = (*spath, spelled, j)
                e = self.check_table(ex, epath, S.EXECUTION_KEYS)
                inner = e.get("execution")
                if inner is None:
                    self.rejected(
                        epath, "no execution", 'add execution = {type = "...", params = {...}}'
                    )
                    continue
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


_DEFAULTS: dict[str, dict[str, Any]] = {}


def _defaults(kind: str) -> dict[str, Any]:
    """The default config of ``kind`` as plain data (what an unwritten field holds)."""
    found = _DEFAULTS.get(kind)
    if found is None:
        found = _DEFAULTS[kind] = msgspec.to_builtins(CONFIG_TYPES[kind]())
    return found


def parse_string_list(source: str) -> list[str]:
    """Komodo's ``parse_string_list`` (``client/core/rs/src/parsers.rs``): lines, then commas;
    blank lines, ``#`` lines and end-of-line `` #`` comments dropped."""
    out: list[str] = []
    for raw in source.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        for part in line.split(" #", 1)[0].split(","):
            if part.strip():
                out.append(part.strip())
    return out


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
