"""Seed-compatible model names: ``from rechub_core.matching import DSSM``.

Names resolve through the plugin registry, so any installed plugin's model can be imported
from here. A well-known model whose plugin is not installed raises an error naming the
package to install.
"""

from __future__ import annotations

from typing import Any

from rechub_core.errors import PluginNotInstalledError, UnknownComponentError

#: Well-known model -> (distribution, folder in this repository).
KNOWN_MODELS: dict[str, tuple[str, str]] = {
    **{
        n: ("rechub-plugins-dssm", "plugins/rechub_plugins_dssm")
        for n in ("DSSM", "FaceBookDSSM", "YoutubeDNN", "YoutubeSBC")
    },
    **{
        n: ("rechub-plugins-seq", "rechub_plugins_seq")
        for n in ("GRU4Rec", "NARM", "SASRec", "STAMP")
    },
    **{
        n: ("rechub-plugins-multiinterest", "rechub_plugins_multiinterest")
        for n in ("MIND", "SINE", "ComirecDR", "ComirecSA")
    },
}

__all__ = sorted(KNOWN_MODELS)


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(name)
    from rechub_core.plugins import get_spec

    try:
        return get_spec("model", name).factory
    except UnknownComponentError:
        if name in KNOWN_MODELS:
            dist, folder = KNOWN_MODELS[name]
            raise PluginNotInstalledError(
                f"model {name} is provided by the package {dist}, which is not installed "
                f"(or failed to load: see `rechub list-plugins`); install it with "
                f"`pip install -e {folder}` from the rechub repository"
            ) from None
        raise AttributeError(
            f"rechub_core.matching has no model {name!r}; see `rechub list-components model`"
        ) from None
