"""Hook specifications of rechub (pluggy project name ``rechub``).

A plugin is a module (or object) with functions marked ``@hookimpl`` and named like the specs
below; it is found through an entry point in the group ``rechub``. Component hooks take no
arguments and return (or yield) typed records from :mod:`rechub_core.specs`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import pluggy

from rechub_core.specs import COMPONENT_KINDS

if TYPE_CHECKING:
    import typer

    from rechub_core.specs import (
        EncoderSpec,
        IndexSpec,
        LossSpec,
        ModelSpec,
        SamplerSpec,
        TowerSpec,
    )

PROJECT_NAME = "rechub"
hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


# --- components -------------------------------------------------------------------------------


@hookspec
def rechub_register_towers() -> Iterable[TowerSpec]:
    """Return the towers (feature batch -> vectors ``(B, D)``) this plugin provides."""
    raise NotImplementedError


@hookspec
def rechub_register_encoders() -> Iterable[EncoderSpec]:
    """Return the user encoders (``(B, D)`` or multi-interest ``(B, K, D)``) it provides."""
    raise NotImplementedError


@hookspec
def rechub_register_losses() -> Iterable[LossSpec]:
    """Return the training losses it provides."""
    raise NotImplementedError


@hookspec
def rechub_register_samplers() -> Iterable[SamplerSpec]:
    """Return the negative samplers it provides."""
    raise NotImplementedError


@hookspec
def rechub_register_indexes() -> Iterable[IndexSpec]:
    """Return the item indexes (exact, approximate) it provides.

    Each :class:`~rechub_core.specs.IndexSpec`'s factory builds a subclass of
    :class:`rechub_core.index.Index` whose ``saved_kind`` is the spec's name, so that a run's
    saved index is read back by ``IndexSpec.load`` (its ``loader``, default the class's
    ``load``); check one with :func:`rechub_core.testing.check_index`.
    """
    raise NotImplementedError


@hookspec
def rechub_register_models() -> Iterable[ModelSpec]:
    """Return the ready-made retrieval models it provides (e.g. ``DSSM``, ``SASRec``)."""
    raise NotImplementedError


# --- extension points that receive a host object ---------------------------------------------


@hookspec
def rechub_register_commands(app: typer.Typer) -> None:
    """Add commands to the ``rechub`` command line; ``app`` is the root typer application."""
    raise NotImplementedError


#: Hook name -> component kind, for the component hooks (a view of specs.COMPONENT_KINDS).
COMPONENT_HOOKS: dict[str, str] = {hook: kind for kind, (_, hook) in COMPONENT_KINDS.items()}
