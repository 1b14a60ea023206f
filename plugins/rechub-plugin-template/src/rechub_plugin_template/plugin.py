"""Registration with rechub (the module the ``rechub`` entry point names).

Each ``@hookimpl`` function is named like a hook in ``rechub_core/hookspecs.py`` and yields
records; ``rechub list-plugins`` shows what they register.
"""

from __future__ import annotations

from collections.abc import Iterator

from rechub_core.hookspecs import hookimpl
from rechub_core.specs import EncoderSpec, ModelSpec, TrainSettings

# Factories are lazy "module:attr" strings (RENAME the module with the package): rechub imports
# the model module only when the model is built, so `rechub --help` and `rechub list-plugins`
# stay fast (no torch import) however many plugins are installed.
MODEL_MODULE = "rechub_plugin_template.model"

#: how `rechub train --model AttentionPool` trains it: list-wise, a full softmax over the
#: catalogue (fine for catalogues up to ~100k items; use "in_batch" + "sampled_softmax" above)
TRAIN_DEFAULTS = TrainSettings(mode=2, loss="softmax", sampler="full", lr=3e-3)


@hookimpl
def rechub_register_models() -> Iterator[ModelSpec]:
    # RENAME: the model name users pass to `rechub train --model`
    yield ModelSpec(
        name="AttentionPool",
        factory=f"{MODEL_MODULE}:AttentionPool",
        family="template",
        description="attention-pooled history vs. item id embedding",
        train_defaults=TRAIN_DEFAULTS,
    )


@hookimpl
def rechub_register_encoders() -> Iterator[EncoderSpec]:
    # RENAME: the encoder name for create("encoder", ...)
    yield EncoderSpec(
        name="attention_pool",
        factory=f"{MODEL_MODULE}:AttentionPoolEncoder",
        description="attention-weighted mean of the history",
    )
