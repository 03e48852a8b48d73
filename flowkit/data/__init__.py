"""Data: 2-D toys, built-in digit images, image folders, and PNG previews of samples.

Everything is scaled to ``[-1, 1]``; images are float32 ``(C, H, W)``.
"""

from flowkit.data.builtin_images import load_digits, load_mnist5k
from flowkit.data.image_folder import IMAGE_EXTENSIONS, ImageFolder
from flowkit.data.in_memory import InMemoryDataset
from flowkit.data.plots import save_image_grid, save_scatter, save_trajectories
from flowkit.data.registry import DATASET_NAMES, build_dataset
from flowkit.data.toys import TOY_NAMES, sample_toy

__all__ = [
    "DATASET_NAMES",
    "IMAGE_EXTENSIONS",
    "TOY_NAMES",
    "ImageFolder",
    "InMemoryDataset",
    "build_dataset",
    "load_digits",
    "load_mnist5k",
    "sample_toy",
    "save_image_grid",
    "save_scatter",
    "save_trajectories",
]
