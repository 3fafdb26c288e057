"""Which engines exist, and which one a job runs (`choose_engine`).

The built-in engines are listed here; others come from installed packages that name an
`Engine` object under the `streamswap.engines` entry-point group, e.g. in pyproject.toml:

    [project.entry-points."streamswap.engines"]
    blur = "my_package.blur:ENGINE"

Nothing is cached at module level: each call looks again (the entry points are read from the
installed metadata, milliseconds).
"""

from __future__ import annotations

import importlib
import importlib.metadata as md
import logging
from typing import TYPE_CHECKING

from streamswap.errors import InputError

if TYPE_CHECKING:
    from streamswap.engines.base import Engine
    from streamswap.models.registry import Registry

log = logging.getLogger(__name__)

ENTRY_POINTS = "streamswap.engines"
BUILT_IN = ("streamswap.engines.ghost:ENGINE", "streamswap.engines.lite:ENGINE")


def _load(ref: str) -> Engine:
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


def engines() -> dict[str, Engine]:
    """Every engine by name: the built-in ones, then the plugins' (a plugin cannot replace a
    built-in engine; one that fails to import is logged and left out)."""
    found: dict[str, Engine] = {}
    for ref in BUILT_IN:
        engine = _load(ref)
        found[engine.name] = engine
    for ep in md.entry_points(group=ENTRY_POINTS):
        try:
            engine = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin must not break the built-in engines
            log.warning("engine plugin %s (%s) does not load: %s", ep.name, ep.value, exc)
            continue
        if engine.name in found:
            log.warning("engine plugin %s: the name %r is taken, left out", ep.value, engine.name)
            continue
        found[engine.name] = engine
    return found


def engine_named(name: str) -> Engine:
    """The engine called `name`; InputError listing the engines there are otherwise."""
    known = engines()
    if name not in known:
        raise InputError(f"unknown --engine {name!r} ({', '.join(known)} or auto)")
    return known[name]


def choose_engine(requested: str, registry: Registry | None = None) -> tuple[Engine, str | None]:
    """(the engine a job runs, a notice for the user or None). auto: the ready engine of lowest
    `auto_rank` (ghost when its models are present, else lite), with a notice saying why the
    better ones were passed over."""
    if requested != "auto":
        return engine_named(requested), None
    from streamswap.models.registry import Registry, RegistryConfig

    registry = registry or Registry(RegistryConfig.from_env())
    ranked = sorted((e for e in engines().values() if e.auto_rank is not None), key=lambda e: e.auto_rank or 0)
    passed: list[str] = []
    for engine in ranked:
        why = engine.unready(registry)
        if why is None:
            notice = f"{'; '.join(passed)}: using the {engine.name} engine ({engine.summary})" if passed else None
            return engine, notice
        passed.append(why)
    raise InputError("no engine can run here: " + "; ".join(passed) + " (see `streamswap doctor`)")
