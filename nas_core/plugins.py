"""Plugins and their registry.

A plugin is a :class:`Plugin` object (or a zero-argument callable returning one)
published under the entry-point group ``nas_core.plugins`` in its package's
``pyproject.toml``::

    [project.entry-points."nas_core.plugins"]
    mydomain = "my_package.plugin:plugin"

Registry keys are plugin-qualified (``mydomain/space-name``). Discovery is lazy:
entry points are loaded on the first lookup, and each plugin is validated when it
is registered, with errors that name the plugin. Two plugins with the same name,
or two entries with the same qualified key, are an error.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Iterable, Mapping

from nas_core.errors import ConfigError

ENTRY_POINT_GROUP = "nas_core.plugins"
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class SpaceEntry:
    """A search space factory with the task that trains its candidates."""

    space: Callable[..., Any]          # () -> SearchSpace
    task: Callable[..., Any]           # (space, **options) -> Task
    description: str = ""


@dataclass(frozen=True)
class Plugin:
    name: str
    version: str = "0"
    description: str = ""
    spaces: Mapping[str, SpaceEntry] = field(default_factory=dict)
    targets: Mapping[str, Callable[[], Any]] = field(default_factory=dict)   # () -> HardwareTarget
    strategies: Mapping[str, Callable[..., Any]] = field(default_factory=dict)  # Strategy classes
    #: a folder of target TOML files, each found by its file name (``targets/nrf52840.toml`` -> ``nrf52840``);
    #: the registry scans it, so a new target is one file. Keys also in ``targets`` are an error.
    targets_dir: str | os.PathLike[str] | None = None
    #: optional (store, pareto_records) -> Markdown section added to the study report
    report_section: Callable[..., str] | None = None


def _validate(plugin: Any, origin: str) -> "Plugin":
    if callable(plugin) and not isinstance(plugin, Plugin):
        try:
            plugin = plugin()
        except Exception as exc:  # noqa: BLE001 - report whatever the factory raised
            raise ConfigError(f"plugin {origin}: its factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(plugin, Plugin):
        raise ConfigError(f"plugin {origin}: expected a nas_core.plugins.Plugin, got {type(plugin).__name__}")
    if not _NAME.match(plugin.name or ""):
        raise ConfigError(f"plugin {origin}: name {plugin.name!r} must be lower-case letters, digits, '-', '_' or '.'")
    checked: Plugin = _with_scanned_targets(plugin) if plugin.targets_dir is not None else plugin
    return _validate_entries(checked)


def _validate_entries(plugin: Plugin) -> Plugin:
    for kind in ("spaces", "targets", "strategies"):
        entries = getattr(plugin, kind)
        if not isinstance(entries, Mapping):
            raise ConfigError(f"plugin '{plugin.name}': '{kind}' must be a mapping of names, got {type(entries).__name__}")
        for key, value in entries.items():
            if not isinstance(key, str) or not _NAME.match(key):
                raise ConfigError(f"plugin '{plugin.name}': {kind[:-1]} name {key!r} is not a valid name")
            if kind == "spaces" and not isinstance(value, SpaceEntry):
                raise ConfigError(f"plugin '{plugin.name}': space '{key}' must be a SpaceEntry, got {type(value).__name__}")
            if kind != "spaces" and not callable(value):
                raise ConfigError(f"plugin '{plugin.name}': {kind[:-1]} '{key}' is not callable")
    return plugin


def _with_scanned_targets(plugin: "Plugin") -> "Plugin":
    """The plugin with one target per ``*.toml`` file of its ``targets_dir`` added to ``targets``."""
    import dataclasses
    from functools import partial
    from pathlib import Path

    folder = Path(plugin.targets_dir or "")
    if not folder.is_dir():
        raise ConfigError(f"plugin '{plugin.name}': targets_dir {folder} is not a directory")
    targets = dict(plugin.targets)
    for path in sorted(folder.glob("*.toml")):
        if path.stem in targets:
            raise ConfigError(f"plugin '{plugin.name}': target '{path.stem}' is given twice, by targets['{path.stem}'] "
                              f"and by the file {path}; keep one")
        targets[path.stem] = partial(_load_target_file, path)
    return dataclasses.replace(plugin, targets=targets, targets_dir=None)


def _load_target_file(path: Any) -> Any:
    from nas_core.hardware.target import load_target

    return load_target(path)


def _plugin_frame(exc: BaseException) -> str | None:
    """``file:line`` of the innermost traceback frame outside the Python runtime and importlib (the plugin's
    own code, usually), or None."""
    import traceback

    if isinstance(exc, SyntaxError) and exc.filename:
        return f"{exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    skip = ("importlib", "<frozen")
    for fr in reversed(frames):
        if not any(s in fr.filename for s in skip) and not fr.filename.endswith("nas_core/plugins.py"):
            return f"{fr.filename}:{fr.lineno}"
    return None


class Registry:
    """Plugins by name and their spaces, targets and strategies by qualified key."""

    def __init__(self, plugins: Iterable[Plugin] = (), *, discover: bool = True):
        self._plugins: dict[str, Plugin] = {}
        self._origins: dict[str, str] = {}
        self._broken: dict[str, str] = {}
        self._discover = discover
        self._discovered = False
        for p in plugins:
            self.register(p, origin=f"'{getattr(p, 'name', p)}' (given directly)")

    def register(self, plugin: Any, *, origin: str | None = None) -> Plugin:
        origin = origin or f"'{getattr(plugin, 'name', plugin)}'"
        checked = _validate(plugin, origin)
        if checked.name in self._plugins:
            raise ConfigError(f"duplicate plugin name '{checked.name}': registered by {self._origins[checked.name]} "
                              f"and again by {origin}")
        self._plugins[checked.name] = checked
        self._origins[checked.name] = origin
        return checked

    def _ensure(self) -> None:
        if self._discovered or not self._discover:
            return
        self._discovered = True
        seen: set[str] = set()
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            origin = f"'{ep.name}' (entry point {ep.value})"
            if ep.name in seen:
                raise ConfigError(f"duplicate plugin name '{ep.name}': two installed packages publish it "
                                  f"({self._origins.get(ep.name, 'another entry point')} and {origin})")
            seen.add(ep.name)
            # a plugin that fails to load is reported when it is used or listed; the others still work
            try:
                obj = ep.load()
                plugin = _validate(obj, origin)
                if plugin.name != ep.name:
                    raise ConfigError(f"plugin {origin} calls itself '{plugin.name}'; the entry-point name must match")
            except ConfigError as exc:
                self._broken[ep.name] = str(exc)
                continue
            except Exception as exc:  # noqa: BLE001
                where = _plugin_frame(exc)
                self._broken[ep.name] = (f"plugin {origin} failed to import: {type(exc).__name__}: {exc}"
                                         + (f" (at {where})" if where else ""))
                continue
            self.register(plugin, origin=origin)

    # -- lookups ---------------------------------------------------------------------
    def plugins(self) -> dict[str, Plugin]:
        self._ensure()
        return dict(self._plugins)

    def origin(self, name: str) -> str:
        self._ensure()
        return self._origins[name]

    def _keys(self, kind: str) -> dict[str, tuple[Plugin, Any]]:
        self._ensure()
        out: dict[str, tuple[Plugin, Any]] = {}
        for p in self._plugins.values():
            for key, value in getattr(p, kind).items():
                out[f"{p.name}/{key}"] = (p, value)
        return out

    def _lookup(self, kind: str, key: str, allow_short: bool) -> tuple[str, Any]:
        entries = self._keys(kind)
        label = kind[:-1]
        if not isinstance(key, str) or not key:
            raise ConfigError(f"a {label} name is required; available: {', '.join(sorted(entries)) or 'none'}")
        if key in entries:
            return key, entries[key][1]
        if "/" in key:
            plugin = key.split("/", 1)[0]
            if plugin in self._broken:
                raise ConfigError(self._broken[plugin])
            if plugin not in self._plugins:
                raise ConfigError(f"unknown plugin '{plugin}' in {label} '{key}'; installed plugins: "
                                  f"{', '.join(sorted(self._plugins)) or 'none'} (see 'nas plugins')")
        elif allow_short:
            matches = [k for k in entries if k.split("/", 1)[1] == key]
            if len(matches) == 1:
                return matches[0], entries[matches[0]][1]
            if len(matches) > 1:
                raise ConfigError(f"{label} '{key}' is ambiguous: {', '.join(sorted(matches))}; use the qualified name")
        raise ConfigError(f"unknown {label} '{key}'; available: {', '.join(sorted(entries)) or 'none'}")

    def space(self, key: str) -> tuple[str, SpaceEntry]:
        """``plugin/space`` (or the short name if only one plugin has it)."""
        return self._lookup("spaces", key, allow_short=True)

    def target(self, key: str) -> tuple[str, Any]:
        """``plugin/target`` (or the short name), or the path of a target TOML file (``./board.toml``)."""
        if isinstance(key, str) and key.endswith(".toml"):
            from pathlib import Path

            from nas_core.hardware.target import load_target

            path = Path(key).expanduser()
            if not path.is_file():
                raise ConfigError(f"target file {key} does not exist")
            return f"file:{path.resolve()}", load_target(path)
        qualified, factory = self._lookup("targets", key, allow_short=True)
        return qualified, factory()

    def plugin_strategies(self) -> dict[str, Callable[..., Any]]:
        return {k: v for k, (_, v) in self._keys("strategies").items()}

    def strategies(self) -> dict[str, Any]:
        """Every strategy a study can name: the core's (``evolution``) and the plugins' (``plugin/name``)."""
        from nas_core.strategies import CORE_STRATEGIES

        return {**CORE_STRATEGIES, **self.plugin_strategies()}

    def broken(self) -> dict[str, str]:
        """Installed plugins that failed to load, with the reason."""
        self._ensure()
        return dict(self._broken)

    def listing(self) -> dict[str, dict[str, list[str]]]:
        self._ensure()
        return {name: {"version": [p.version], "spaces": sorted(p.spaces), "targets": sorted(p.targets),
                       "strategies": sorted(p.strategies)} for name, p in sorted(self._plugins.items())}
