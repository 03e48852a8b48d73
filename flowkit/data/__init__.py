"""Data: 2-D toys, built-in digit images, image folders, and PNG previews of samples.

Everything is scaled to ``[-1, 1]``; images are float32 ``(C, H, W)``.
"""

from flowkit._lazy import lazy_getattr

__all__ = [
    "Batch",
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

__getattr__ = lazy_getattr(
    __name__,
    {
        "Batch": "batch",
        "DATASET_NAMES": "registry",
        "IMAGE_EXTENSIONS": "image_folder",
        "TOY_NAMES": "toys",
        "ImageFolder": "image_folder",
        "InMemoryDataset": "in_memory",
        "build_dataset": "registry",
        "load_digits": "builtin_images",
        "load_mnist5k": "builtin_images",
        "sample_toy": "toys",
        "save_image_grid": "plots",
        "save_scatter": "plots",
        "save_trajectories": "plots",
    },
)
