"""Real datasets (MNIST, GTSRB), the paper's distorted-MNIST variants and their loaders.

The API the rest of stnkit uses: :func:`list_datasets`, :func:`dataset_info`,
:func:`make_loader`, :func:`class_names` and :func:`resolve_data_root`; ``stnkit.data.commands`` adds the
``stnkit data download|show`` commands. See docs/data.md for the distortion settings.
"""

from stnkit.data.augment import (
    AUGMENT_PRESETS,
    AugmentSpec,
    TtaView,
    apply_augment,
    augment_batch,
    augment_matrices,
    parse_augment,
    sample_augment_params,
    tta_views,
)
from stnkit.data.distortions import DISTORTIONS, Distortion, distort, get_distortion
from stnkit.data.download import (
    ChecksumError,
    DownloadError,
    RemoteFile,
    download_dataset,
    download_file,
)
from stnkit.data.gtsrb import (
    GTSRB_CLASS_NAMES,
    GtsrbArrays,
    GtsrbError,
    load_gtsrb,
    load_gtsrb_npz,
    load_gtsrb_original,
)
from stnkit.data.loaders import (
    TEST_SEED,
    BatchDataset,
    DatasetInfo,
    DistortedLoader,
    canonical_digest,
    class_names,
    dataset_info,
    first_test_images,
    list_datasets,
    load_source,
    make_loader,
)
from stnkit.data.mnist import IdxError, MnistArrays, load_mnist, read_idx
from stnkit.data.roots import DataNotFoundError, resolve_data_root, run_data_root
from stnkit.data.show import image_grid, save_grid

__all__ = [
    "AUGMENT_PRESETS",
    "DISTORTIONS",
    "GTSRB_CLASS_NAMES",
    "TEST_SEED",
    "AugmentSpec",
    "BatchDataset",
    "ChecksumError",
    "DataNotFoundError",
    "DatasetInfo",
    "DistortedLoader",
    "Distortion",
    "DownloadError",
    "GtsrbArrays",
    "GtsrbError",
    "IdxError",
    "MnistArrays",
    "RemoteFile",
    "TtaView",
    "apply_augment",
    "augment_batch",
    "augment_matrices",
    "canonical_digest",
    "class_names",
    "dataset_info",
    "distort",
    "download_dataset",
    "download_file",
    "first_test_images",
    "get_distortion",
    "image_grid",
    "list_datasets",
    "load_gtsrb",
    "load_gtsrb_npz",
    "load_gtsrb_original",
    "load_mnist",
    "load_source",
    "make_loader",
    "parse_augment",
    "read_idx",
    "resolve_data_root",
    "run_data_root",
    "sample_augment_params",
    "save_grid",
    "tta_views",
]
