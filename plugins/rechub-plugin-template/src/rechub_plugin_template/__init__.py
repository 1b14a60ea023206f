"""rechub plugin template: an attention-pooled history encoder and the model built from it."""

from rechub_plugin_template.model import AttentionPool, AttentionPoolEncoder

__all__ = ["AttentionPool", "AttentionPoolEncoder"]
