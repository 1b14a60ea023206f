"""The plugin host: one pluggy PluginManager, entry-point loading, and the component registry.

Plugins are found through entry points in the group ``rechub``. Each entry point is loaded on
its own, so a plugin that fails to import, implements a hook that does not exist (or with a
wrong signature, or without ``@hookimpl``), registers a name another plugin already took, or
uses an entry-point name another distribution already uses is reported (``rechub
list-plugins``) without taking the others down. Environment variables:

* ``RECHUB_PLUGINS``: comma-separated entry-point or distribution names; only those load
  (set it empty to load none).
* ``RECHUB_DISABLE_PLUGIN_AUTOLOAD=1``: load no entry-point plugins, only the core's built-ins.
* ``RECHUB_TRACE_HOOKS=1``: pluggy's own hook tracing (``pm.enable_tracing``), plus a line for
  every entry point loaded and the plugin each hook call is isolated to, logged to
  ``rechub.hooks`` at DEBUG (written to stderr when no logging is configured).

Every hook goes through pluggy: a component hook is called once per plugin with
``pm.subset_hook_caller`` (every other plugin removed), so one plugin's failure is recorded
against it alone; unknown hooks are found with ``pm.check_pending()`` right after each plugin
registers.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib.metadata as md
import inspect
import logging
import os
import traceback
from collections.abc import Iterable
from typing import Any

import attrs
import pluggy

from rechub_core import hookspecs
from rechub_core.errors import DuplicateComponentError, RechubError, UnknownComponentError
from rechub_core.specs import KINDS, SPEC_TYPES, ComponentSpec, normalize_name

ENTRY_POINT_GROUP = "rechub"
ENV_PLUGINS = "RECHUB_PLUGINS"
ENV_DISABLE_AUTOLOAD = "RECHUB_DISABLE_PLUGIN_AUTOLOAD"
ENV_TRACE = "RECHUB_TRACE_HOOKS"
CORE_DISTRIBUTION = "rechub"
BUILTIN_PLUGIN_NAME = "rechub.builtins"

log = logging.getLogger("rechub.plugins")
trace_log = logging.getLogger("rechub.hooks")


@attrs.frozen
class PluginInfo:
    """What ``rechub list-plugins`` shows for one plugin.

    Attributes:
        name: entry-point name (or the name it was registered under in code).
        distribution: the installed package that provides it.
        version: that package's version ("" when unknown).
        status: "ok", or "error" when it failed to load or clashed (see ``error``).
        error: the reason, one line, when status is "error".
        components: kind -> names it registers (display names, sorted).
        hooks: names of the hooks it implements.
        builtin: True for the core's own components.
    """

    name: str
    distribution: str
    version: str
    status: str
    error: str | None = None
    components: dict[str, tuple[str, ...]] = attrs.field(factory=dict)
    hooks: tuple[str, ...] = ()
    builtin: bool = False


@attrs.define
class _Registration:
    spec: ComponentSpec
    plugin: str
    distribution: str


def _one_line(exc: BaseException) -> str:
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return " ".join(text.split())


def _env_selection() -> set[str] | None:
    raw = os.environ.get(ENV_PLUGINS)
    if raw is None:
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class PluginHost:
    """Owns the PluginManager, the loaded plugins' status and the component registry.

    Most code uses the process-wide host through :func:`get_host`; tests build their own.
    """

    def __init__(self, *, group: str = ENTRY_POINT_GROUP, builtins: bool = True) -> None:
        self.group = group
        self.pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
        self.pm.add_hookspecs(hookspecs)
        self._with_builtins = builtins
        self._loaded = False
        self._meta: dict[str, dict[str, Any]] = {}
        self._failed: dict[str, PluginInfo] = {}
        self._registry: dict[str, dict[str, list[_Registration]]] | None = None
        self._plugin_errors: dict[str, str] = {}
        #: problems found when a plugin registered (e.g. a hook without @hookimpl)
        self._register_errors: dict[str, str] = {}
        #: what the environment kept from loading (see :meth:`load_notes`)
        self._skipped: list[str] = []
        self._unmatched: list[str] = []
        self._autoload_disabled = False
        #: pluggy's tracer for rechub's own lines (it writes only once a writer is set)
        self._trace = self.pm.trace.root.get("rechub")
        if os.environ.get(ENV_TRACE, "") not in ("", "0"):
            _enable_trace_output()
            self.pm.trace.root.setwriter(_write_trace)
            self.pm.enable_tracing()

    # --- loading ------------------------------------------------------------------------------

    def load(self) -> None:
        """Register the built-ins and every selected entry point; safe to call repeatedly."""
        if self._loaded:
            return
        self._loaded = True
        if self._with_builtins:
            from rechub_core import builtins

            self.register(
                builtins,
                name=BUILTIN_PLUGIN_NAME,
                distribution=CORE_DISTRIBUTION,
                version=_version_of(CORE_DISTRIBUTION),
                builtin=True,
            )
        entry_points = sorted(md.entry_points(group=self.group), key=lambda e: e.name)
        if os.environ.get(ENV_DISABLE_AUTOLOAD, "") not in ("", "0"):
            self._autoload_disabled = True
            self._skipped = [ep.name for ep in entry_points]
            return
        selection = _env_selection()
        if selection is not None:
            known = {ep.name for ep in entry_points}
            known |= {ep.dist.name for ep in entry_points if ep.dist is not None}
            self._unmatched = sorted(selection - known)
        for ep in entry_points:
            dist = ep.dist.name if ep.dist is not None else "?"
            version = ep.dist.version if ep.dist is not None else ""
            if selection is not None and ep.name not in selection and dist not in selection:
                self._skipped.append(ep.name)
                continue
            if self.pm.has_plugin(ep.name) or ep.name in self._failed:
                self._entry_point_name_taken(ep.name, dist, version)
                continue
            self._trace(f"loading entry point {ep.name} = {ep.value} ({dist} {version})")
            try:
                plugin = ep.load()
            except Exception as exc:  # a broken plugin must never take the host down
                log.warning("plugin %s (%s) failed to import: %s", ep.name, dist, exc)
                self._failed[ep.name] = PluginInfo(
                    name=ep.name,
                    distribution=dist,
                    version=version,
                    status="error",
                    error=f"import failed: {_one_line(exc)}",
                )
                continue
            self.register(plugin, name=ep.name, distribution=dist, version=version)

    def load_notes(self) -> list[str]:
        """Why installed plugins were not loaded, one sentence each naming the variable to
        change (``RECHUB_DISABLE_PLUGIN_AUTOLOAD``, ``RECHUB_PLUGINS``); empty when none was
        kept out."""
        self.load()
        installed = ", ".join(self._skipped)
        notes: list[str] = []
        if self._autoload_disabled:
            if self._skipped:
                notes.append(
                    f"{ENV_DISABLE_AUTOLOAD} is set, so no plugin was loaded ({len(self._skipped)} "
                    f"installed: {installed}); unset it to load them"
                )
            return notes
        raw = os.environ.get(ENV_PLUGINS)
        if self._unmatched:
            names = sorted(
                {ep.name for ep in md.entry_points(group=self.group)}
                | {ep.dist.name for ep in md.entry_points(group=self.group) if ep.dist is not None}
            )
            notes.append(
                f"{ENV_PLUGINS}={raw} names no installed plugin: {', '.join(self._unmatched)}; "
                f"use entry-point or package names ({', '.join(names) or 'none installed'}), "
                f"or unset {ENV_PLUGINS} to load every plugin"
            )
        if self._skipped:
            notes.append(
                f"{ENV_PLUGINS}={raw} left out {len(self._skipped)} installed plugin(s): "
                f"{installed}; add them to it, or unset {ENV_PLUGINS} to load every plugin"
            )
        return notes

    def _entry_point_name_taken(self, name: str, dist: str, version: str) -> None:
        """Record that ``dist`` was not loaded because another distribution already uses its
        entry-point name (pluggy names plugins by it, so both cannot be registered)."""
        first = self._meta[name]["distribution"] if name in self._meta else None
        if first is None and name in self._failed:
            first = self._failed[name].distribution
        if first == dist:
            return
        first = first or "another plugin"
        self._failed[f"{name} ({dist})"] = PluginInfo(
            name=name,
            distribution=dist,
            version=version,
            status="error",
            error=f"not loaded: the entry point name {name!r} is already used by {first}; "
            f"give {dist}'s entry point another name ([project.entry-points.rechub] in its "
            "pyproject.toml)",
        )

    def register(
        self,
        plugin: object,
        *,
        name: str,
        distribution: str = "(in-process)",
        version: str = "",
        builtin: bool = False,
    ) -> bool:
        """Register a plugin object (module or instance with hook implementations).

        Returns False (and records the reason, shown by ``list-plugins``) when the plugin
        implements a hook with a wrong signature or a hook that does not exist.
        """
        self._registry = None
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # pluggy's PluginValidationError: wrong hook signature
            self._failed[name] = PluginInfo(
                name=name,
                distribution=distribution,
                version=version,
                status="error",
                error=f"invalid hook implementation: {_one_line(exc)}",
                builtin=builtin,
            )
            return False
        try:  # every plugin before this one passed, so this one is the culprit
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = [
                c.name
                for c in self.pm.get_hookcallers(plugin) or []
                if not c.has_spec() and any(not i.optionalhook for i in c.get_hookimpls())
            ]
            self.pm.unregister(plugin)
            self._failed[name] = PluginInfo(
                name=name,
                distribution=distribution,
                version=version,
                status="error",
                error=_unknown_hooks_message(unknown, self._known_hooks())
                if unknown
                else _one_line(exc),
                builtin=builtin,
            )
            return False
        self._failed.pop(name, None)
        self._meta[name] = {"distribution": distribution, "version": version, "builtin": builtin}
        implemented = {c.name for c in self.pm.get_hookcallers(plugin) or []}
        unmarked = [
            hook
            for hook in self._known_hooks()
            if hook not in implemented and callable(getattr(plugin, hook, None))
        ]
        if unmarked:
            self._register_errors[name] = (
                f"{', '.join(unmarked)} not marked with @hookimpl, so rechub does not call it "
                "(decorate it: from rechub_core.hookspecs import hookimpl)"
            )
        return True

    def _known_hooks(self) -> list[str]:
        """Names of the hook specifications (pluggy also keeps callers for misspelt hooks that
        a plugin implemented; those have no spec and are not listed)."""
        return sorted(
            n
            for n in dir(self.pm.hook)
            if n.startswith("rechub_") and getattr(self.pm.hook, n).has_spec()
        )

    def unregister(self, name: str) -> None:
        """Remove a plugin registered under ``name`` (tests use this to clean up)."""
        self._registry = None
        self._failed.pop(name, None)
        self._meta.pop(name, None)
        self._register_errors.pop(name, None)
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)

    # --- registry -----------------------------------------------------------------------------

    def _build_registry(self) -> dict[str, dict[str, list[_Registration]]]:
        self.load()
        if self._registry is not None:
            return self._registry
        registry: dict[str, dict[str, list[_Registration]]] = {k: {} for k in KINDS}
        errors: dict[str, list[str]] = {}
        for hook_name, kind in hookspecs.COMPONENT_HOOKS.items():
            caller = getattr(self.pm.hook, hook_name)
            for impl in caller.get_hookimpls():  # in load order: the first registrant keeps a name
                meta = self._meta.get(impl.plugin_name, {})
                dist = str(meta.get("distribution", "?"))
                try:
                    result = self._call_alone(hook_name, impl)
                    if isinstance(result, ComponentSpec):
                        raise TypeError(
                            f"{hook_name} returned one {type(result).__name__}; yield each "
                            "record (or return a list of them)"
                        )
                    records = list(result or [])
                    self._trace(f"{hook_name} from {impl.plugin_name}: {len(records)} records")
                    expected = SPEC_TYPES[kind]
                    for rec in records:
                        if not isinstance(rec, expected):
                            raise TypeError(
                                f"{hook_name} must yield {expected.__name__} records, "
                                f"got {type(rec).__name__}"
                            )
                except Exception as exc:
                    errors.setdefault(impl.plugin_name, []).append(
                        f"{hook_name} failed: {_one_line(exc)}"
                    )
                    continue
                for rec in records:
                    key = normalize_name(rec.name)
                    entries = registry[kind].setdefault(key, [])
                    if entries and entries[0].distribution != dist:
                        errors.setdefault(impl.plugin_name, []).append(
                            f"{kind} {rec.name!r} is also registered by {entries[0].distribution}"
                        )
                    if not any(e.plugin == impl.plugin_name for e in entries):
                        entries.append(_Registration(rec, impl.plugin_name, dist))
        self._plugin_errors = {name: "; ".join(msgs) for name, msgs in errors.items()}
        self._registry = registry
        return registry

    def get_spec(self, kind: str, name: str) -> ComponentSpec:
        """The record registered as ``name`` for ``kind``.

        Raises:
            UnknownComponentError: no plugin registers it; the message lists what exists.
            DuplicateComponentError: two distributions register it; the message names both.
        """
        registry = self._build_registry()
        if kind not in registry:
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
            )
        entries = registry[kind].get(normalize_name(name))
        if not entries:
            available = ", ".join(self.list_components(kind)) or "(none)"
            raise UnknownComponentError(
                f"no {kind} named {name!r}; available {kind}s: {available}. "
                "Install the plugin that provides it, or check `rechub list-components`."
            )
        dists = sorted({e.distribution for e in entries})
        if len(dists) > 1:
            raise DuplicateComponentError(
                f"{kind} {name!r} is registered by more than one package: {' and '.join(dists)}; "
                f"uninstall one, or limit loading with {ENV_PLUGINS}=<names>"
            )
        return entries[0].spec

    def create(self, kind: str, name: str, /, *args: Any, **params: Any) -> Any:
        """Build the component ``name`` of ``kind`` with keyword ``params``.

        Raises:
            RechubError: positional parameters, an unknown keyword or a missing required one;
                the message lists the keywords the component accepts.
        """
        spec = self.get_spec(kind, name)
        factory = spec.factory
        accepted, required = _keywords_of(factory)
        where = f"cannot create {kind} {spec.name!r}"
        if args:
            raise RechubError(
                f"{where}: got {len(args)} positional parameter(s) after the name; pass every "
                f"parameter by keyword, e.g. create({kind!r}, {spec.name!r}, "
                f"{(required or accepted or ['param'])[0]}=...); "
                f"{_accepted_text(accepted, required)}"
            )
        if accepted is not None:
            unknown = sorted(set(params) - set(accepted))
            missing = [r for r in required if r not in params]
            if unknown or missing:
                problems = []
                if unknown:
                    hints = [_close_hint(u, accepted) for u in unknown]
                    problems.append("unknown keyword(s) " + ", ".join(hints))
                if missing:
                    problems.append("missing required keyword(s) " + ", ".join(missing))
                raise RechubError(
                    f"{where}: {'; '.join(problems)}; {_accepted_text(accepted, required)}"
                )
        try:
            return factory(**params)
        except TypeError as exc:
            if "unexpected keyword" in str(exc) or "required" in str(exc):
                raise RechubError(f"{where}: {exc}; {_accepted_text(accepted, required)}") from exc
            raise

    def list_components(self, kind: str, pattern: str | None = None) -> list[str]:
        """Sorted display names of ``kind``; ``pattern`` is a case-insensitive glob."""
        registry = self._build_registry()
        if kind not in registry:
            raise UnknownComponentError(
                f"unknown component kind {kind!r}; kinds are: {', '.join(KINDS)}"
            )
        names = sorted({entries[0].spec.name for entries in registry[kind].values()}, key=str.lower)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
        return names

    def plugins(self, include_builtins: bool = False) -> list[PluginInfo]:
        """Status and registrations of every plugin, failed ones included."""
        registry = self._build_registry()
        infos: list[PluginInfo] = []
        for name, meta in self._meta.items():
            if meta["builtin"] and not include_builtins:
                continue
            components: dict[str, list[str]] = {}
            for kind, entries_by_key in registry.items():
                for entries in entries_by_key.values():
                    for e in entries:
                        if e.plugin == name:
                            components.setdefault(kind, []).append(e.spec.name)
            plugin = self.pm.get_plugin(name)
            hooks = tuple(sorted(c.name for c in self.pm.get_hookcallers(plugin) or []))
            errors = (self._register_errors.get(name), self._plugin_errors.get(name))
            error = "; ".join(e for e in errors if e) or None
            infos.append(
                PluginInfo(
                    name=name,
                    distribution=str(meta["distribution"]),
                    version=str(meta["version"]),
                    status="error" if error else "ok",
                    error=error,
                    components={k: tuple(sorted(v, key=str.lower)) for k, v in components.items()},
                    hooks=hooks,
                    builtin=bool(meta["builtin"]),
                )
            )
        infos.extend(i for i in self._failed.values() if include_builtins or not i.builtin)
        return sorted(infos, key=lambda i: (not i.builtin, i.name))

    def call_register_commands(self, app: Any) -> None:
        """Let every plugin add commands to the typer ``app``; a failing plugin is logged."""
        self.load()
        for impl in self.pm.hook.rechub_register_commands.get_hookimpls():
            try:
                self._call_alone("rechub_register_commands", impl, app=app)
            except Exception as exc:
                log.warning("plugin %s failed to add commands: %s", impl.plugin_name, exc)

    def _call_alone(self, hook_name: str, impl: pluggy.HookImpl, **kwargs: Any) -> Any:
        """Call ``hook_name`` through pluggy on ``impl``'s plugin only (every other plugin is
        removed with ``subset_hook_caller``), so an exception is that plugin's; returns its
        result (None when it returned None)."""
        others = [p for p in self.pm.get_plugins() if p is not impl.plugin]
        self._trace(f"calling {hook_name} on {impl.plugin_name} alone")
        results = self.pm.subset_hook_caller(hook_name, remove_plugins=others)(**kwargs)
        return results[0] if results else None


def _unknown_hooks_message(unknown: Iterable[str], known: list[str]) -> str:
    """``implements unknown hook(s) X (did you mean Y?) ...``: names the likely intended hook."""
    parts = []
    for hook in sorted(unknown):
        close = difflib.get_close_matches(hook, known, n=1, cutoff=0.6)
        parts.append(f"{hook} (did you mean {close[0]}?)" if close else hook)
    return (
        f"implements unknown hook(s) {', '.join(parts)}: rename the function to a hook rechub "
        f"defines; known hooks: {', '.join(known)}"
    )


def _keywords_of(factory: Any) -> tuple[list[str] | None, list[str]]:
    """(accepted keyword names, required ones) of ``factory``; accepted is None when it takes
    ``**kwargs`` or has no readable signature (then anything is passed through)."""
    init = getattr(factory, "__init__", None) if isinstance(factory, type) else None
    if getattr(init, "__qualname__", "") == "Module.__init__":
        return [], []  # a torch module without its own __init__ takes no parameters
    try:
        sig = inspect.signature(factory)
    except (TypeError, ValueError):
        return None, []
    accepted: list[str] = []
    required: list[str] = []
    for p in sig.parameters.values():
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return None, required
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            continue
        accepted.append(p.name)
        if p.default is inspect.Parameter.empty:
            required.append(p.name)
    return accepted, required


def _accepted_text(accepted: list[str] | None, required: list[str]) -> str:
    if accepted is None:
        return "see the component's documentation for its parameters"
    if not accepted:
        return "it takes no parameters"
    req = f" (required: {', '.join(required)})" if required else ""
    return f"accepted keywords: {', '.join(accepted)}{req}"


def _close_hint(name: str, accepted: list[str]) -> str:
    close = [a for a in accepted if a.startswith(name) or name.startswith(a)]
    close = close or difflib.get_close_matches(name, accepted, n=1, cutoff=0.6)
    return f"{name!r} (did you mean {close[0]!r}?)" if close else repr(name)


def _write_trace(message: str) -> None:
    """pluggy's trace writer: each line of ``message`` logged to ``rechub.hooks`` at DEBUG."""
    for line in message.splitlines():
        trace_log.debug("%s", line.rstrip())


def _enable_trace_output() -> None:
    """Make ``RECHUB_TRACE_HOOKS`` visible: trace lines are logged at DEBUG, and written to
    stderr when the application has configured no logging that would show them."""
    trace_log.setLevel(logging.DEBUG)
    if not trace_log.hasHandlers():
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("rechub trace: %(message)s"))
        trace_log.addHandler(handler)
        trace_log.propagate = False  # the CLI's log handler, added later, must not repeat it


def _version_of(distribution: str) -> str:
    try:
        return md.version(distribution)
    except md.PackageNotFoundError:
        return ""


_HOST: PluginHost | None = None


def get_host() -> PluginHost:
    """The process-wide plugin host, loading plugins on first use."""
    global _HOST
    if _HOST is None:
        _HOST = PluginHost()
    _HOST.load()
    return _HOST


def reset_host() -> None:
    """Forget the process-wide host (the next :func:`get_host` reloads every plugin)."""
    global _HOST
    _HOST = None


def create(kind: str, name: str, /, *args: Any, **params: Any) -> Any:
    """Build a registered component: ``create("loss", "sampled_softmax", logq_correction=True)``.

    Parameters go by keyword; positional ones, unknown or missing keywords raise
    :class:`RechubError` listing the keywords the component accepts."""
    return get_host().create(kind, name, *args, **params)


def list_components(kind: str, pattern: str | None = None) -> list[str]:
    """Names registered for ``kind`` ("tower", "encoder", "loss", "sampler", "index", "model")."""
    return get_host().list_components(kind, pattern)


def get_spec(kind: str, name: str) -> ComponentSpec:
    """The registration record of a component (its factory, description, defaults)."""
    return get_host().get_spec(kind, name)


def iter_plugins(include_builtins: bool = False) -> Iterable[PluginInfo]:
    """Every plugin the process-wide host knows, with status."""
    return get_host().plugins(include_builtins)
