"""Datasets: the embedded digits and image folders / zips in the NVIDIA layout."""
from __future__ import annotations

from .digits import DigitsDataset
from .image_folder import ImageFolderDataset


def register_parts(registry) -> None:
    registry.register("dataset", "digits", DigitsDataset, plugin="core")
    registry.register("dataset", "image_folder", ImageFolderDataset, plugin="core")


__all__ = ["DigitsDataset", "ImageFolderDataset", "register_parts"]
