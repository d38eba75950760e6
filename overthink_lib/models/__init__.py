"""Models: the registry (:func:`get_model`) and the multi-exit contract (see :mod:`.base`)."""

from . import imta, msdnet, resnet, sdn  # noqa: F401  (registers every model of the lab)
from .base import MultiExit, get_model, index_state, list_models, model_from_spec, register_model

__all__ = ["MultiExit", "get_model", "index_state", "list_models", "model_from_spec", "register_model"]
