"""Training configurations in the shapes older versions wrote, read into the current one.

Old run folders' ``config.yaml``, model cards' ``training.config`` and recipe files must keep
loading: :func:`migrate` turns them into today's keys before
:meth:`~galaxymorph.training.config.TrainConfig.from_dict` checks them.
"""

from __future__ import annotations

from dataclasses import asdict, fields
from typing import Any

from galaxymorph.data.transforms import SurveyAugment
from galaxymorph.errors import ConfigError

#: The flat keys of configurations written before ``survey_augment`` was one mapping, and the
#: :class:`~galaxymorph.data.transforms.SurveyAugment` field each one is.
LEGACY_SURVEY_KEYS = {"aug_scale": "scale", "aug_blur": "blur", "aug_noise": "noise",
                      "aug_colour": "colour", "aug_stretch": "stretch", "aug_jpeg": "jpeg",
                      "aug_p": "p", "aug_grey": "grey"}


def migrate(raw: dict[str, Any], where: str = "config") -> dict[str, Any]:
    """``raw`` in the current shape: flat ``aug_*`` keys become fields of the
    ``survey_augment`` mapping (a field given both ways with two values is an error naming
    ``where``). A mapping already in the current shape is returned as it is."""
    old = {k: raw[k] for k in LEGACY_SURVEY_KEYS if k in raw}
    if not old:
        return raw
    given = raw.get("survey_augment")
    if isinstance(given, SurveyAugment):
        given = asdict(given)
    if given is not None and not isinstance(given, dict):
        names = [f.name for f in fields(SurveyAugment)]
        raise ConfigError(f"survey_augment must be a mapping of {names}, got {given!r}", where)
    nested = dict(given or {})
    for key, value in old.items():
        name = LEGACY_SURVEY_KEYS[key]
        if name in nested and _plain(nested[name]) != _plain(value):
            raise ConfigError(f"{key} ({value!r}) and survey_augment.{name} ({nested[name]!r}) "
                              "disagree; give it once, in survey_augment", where)
        nested[name] = value
    return {k: v for k, v in raw.items() if k not in old} | {"survey_augment": nested}


def _plain(value: Any) -> Any:
    return [float(v) for v in value] if isinstance(value, (list, tuple)) else value
