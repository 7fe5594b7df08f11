"""Models: one registry and factory (``create_model``) for every classifier galaxymorph trains.

Importing this package registers the seed's custom CNNs (:mod:`custom_cnn`), the
torchvision/timm zoo (:mod:`zoo`) and the ensemble network (:mod:`ensemble`).
"""

from galaxymorph.models import custom_cnn, ensemble, zoo  # noqa: F401  (registers the models)
from galaxymorph.models.introspect import (
    block_modules,
    feature_dim,
    features,
    gradcam_target_layer,
    head_module,
)
from galaxymorph.models.registry import (
    ModelInfo,
    ModelSpec,
    create_model,
    get_model_info,
    list_models,
    model_names,
    model_spec,
    register_model,
)
from galaxymorph.models.transfer import POLICIES, apply_policy, freeze_norm_stats, param_groups
from galaxymorph.models.weights import load_weights_file, seed_torch_hub_from_wheels

__all__ = [
    "POLICIES",
    "ModelInfo",
    "ModelSpec",
    "apply_policy",
    "block_modules",
    "create_model",
    "feature_dim",
    "features",
    "freeze_norm_stats",
    "get_model_info",
    "gradcam_target_layer",
    "head_module",
    "list_models",
    "load_weights_file",
    "model_names",
    "model_spec",
    "param_groups",
    "register_model",
    "seed_torch_hub_from_wheels",
]
