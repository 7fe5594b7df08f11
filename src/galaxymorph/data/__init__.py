"""Data layer: dataset specs, image decoding, label maps, splits, transforms, caches."""

from galaxymorph.data.dataset import GalaxyDataset, open_dataset
from galaxymorph.data.imageio import decode_image, read_image
from galaxymorph.data.label_maps import LabelMap, load_label_map

__all__ = ["GalaxyDataset", "LabelMap", "decode_image", "load_label_map", "open_dataset", "read_image"]
