"""Data layer: dataset specs, image decoding, label maps, splits, transforms, caches."""

from galmorph.data.dataset import GalaxyDataset, open_dataset
from galmorph.data.imageio import decode_image, read_image
from galmorph.data.label_maps import LabelMap, load_label_map

__all__ = ["GalaxyDataset", "LabelMap", "decode_image", "load_label_map", "open_dataset", "read_image"]
