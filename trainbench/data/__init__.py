"""Datasets (recipe ``data:``): a registry of loaders returning uint8 image tensors."""

from trainbench.data import (  # noqa: F401  (register)
    digits,
    imagefolder,
    imagenet,
    synthetic,
    torchvision_sets,
    webdataset,
)
from trainbench.data.base import DATASETS, ImageData, Shape, check_dataset, dataset_shape

__all__ = ["DATASETS", "ImageData", "Shape", "check_dataset", "dataset_shape"]
