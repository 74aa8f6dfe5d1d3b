"""The dataset registry: every fact about a dataset, in one place, without importing torch.

Config validation, recipes, the data layout checks, the augmentation presets, the grid-cost
estimate, ``rest-sweep sparsity`` and the analysis tables all read these entries; none keeps a
dict of its own. Adding a dataset is one ``DATASETS.register`` call (plus a generator if it can
be rebuilt offline).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from trainables.registry import Registry

# Augmentation presets (docs/data.md); a dataset's ``trained_size`` names the size of each.
AUGMENT_PRESETS: tuple[str, ...] = ("disent", "rest-code", "rest-intended", "none")
# torchvision's CIFAR-10 statistics, which DisEnt and REST use for CIFAR-10-C and BFFHQ alike.
CIFAR_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR_STD: tuple[float, float, float] = (0.2023, 0.1994, 0.2010)
# The config's ``normalisation`` options (docs/data.md, "Input normalisation"): ``dataset`` is
# the entry's own (``normalise``, ``mean``, ``std``); ``sdd`` the Sparse Double Descent code's
# statistics, on the datasets SDD has (``sdd_normalisation``; he-zh/sparse-double-descent at
# f9bbdcc, each value cited where it is set below).
NORMALISATIONS: tuple[str, ...] = ("dataset", "sdd")
# SDD datasets/cifar10.py:54 and datasets/cifar100.py:55: Normalize with ImageNet's mean/std.
SDD_IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# SDD datasets/mnist.py:41: Normalize(mean=[0.1307], std=[0.3081]) on the one gray channel; our
# gray images are three equal channels, so each gets it (the mlp's channel mean then sees SDD's
# normalised pixel exactly).
SDD_MNIST = ((0.1307, 0.1307, 0.1307), (0.3081, 0.3081, 0.3081))


@dataclass(frozen=True)
class DatasetInfo:
    """What one biased dataset is, what the paper trains on it and how the report names it.

    ``trained_sizes`` maps an augmentation preset to the square input size the network sees
    (BFFHQ is stored at 128 px, DisEnt trains it at 224, the public REST code at 128).
    ``paper_upweights`` maps a bias-conflicting ratio (percent) to the paper's up-weight
    (Section 4.3); a ratio outside it has no paper value and the ``paper`` recipe refuses it.
    ``crop_flip_presets`` names the presets whose *training* transform is
    ``RandomCrop(size, padding=4)`` + ``RandomHorizontalFlip`` (the rest are resize/ToTensor/
    Normalize only); ``rest-code`` applies its training branch to evaluation splits too.
    """

    name: str
    display_name: str
    num_classes: int
    native_size: int
    stored_sizes: tuple[int, ...]
    trained_sizes: dict[str, int]
    model: str
    lr: float
    paper_ratios: tuple[float, ...]
    paper_upweights: dict[float, float]
    paper_metric: str  # what the paper's Table 2 reports: "unbiased" or "conflicting"
    train_samples: int  # approximate train split size of the real bundle (planning estimates)
    normalise: bool  # Normalize(CIFAR mean/std) after ToTensor
    nested_valid: bool  # how our generators write valid/ (the loader accepts both)
    notes: tuple[str, ...] = field(default_factory=tuple)
    long_name: str = ""  # the grid descriptions' name ("Colored MNIST"); display_name if empty
    mean: tuple[float, float, float] = CIFAR_MEAN  # Normalize(mean, std), used when normalise
    std: tuple[float, float, float] = CIFAR_STD
    # (mean, std) of ``normalisation=sdd``; None where SDD has no such dataset (then refused).
    sdd_normalisation: tuple[tuple[float, ...], tuple[float, ...]] | None = None
    crop_flip_presets: tuple[str, ...] = ()
    valid_at_root: bool = False  # valid/ at the dataset root, shared by every ratio (BFFHQ)
    # Approximate valid split size (planning estimates, with ``train_samples``): our
    # generators' default ``--valid-size`` (trainables/data/bundle.py, BundlePlan.valid_size);
    # BFFHQ's is DisEnt's release (1,000 valid images).
    valid_samples: int = 5_000
    # False for a plain classification dataset (bias label = label, every sample aligned):
    # its bundle holds one ratio folder, UNBIASED_RATIO, with align/ only (docs/data.md).
    biased: bool = True

    @property
    def title(self) -> str:
        """The long name used in grid descriptions (``long_name``, else ``display_name``)."""
        return self.long_name or self.display_name

    @property
    def normalisation(self) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` of the Normalize step, or None for ToTensor only."""
        return (self.mean, self.std) if self.normalise else None

    @property
    def normalisations(self) -> dict[str, tuple[tuple[float, ...], tuple[float, ...]] | None]:
        """The ``normalisation`` options this dataset has: name -> ``(mean, std)`` of the
        Normalize step, or None for ToTensor only (``sdd`` only where SDD has the dataset)."""
        options = {"dataset": self.normalisation, "sdd": self.sdd_normalisation}
        return {k: v for k, v in options.items() if k == "dataset" or v is not None}

    def normalisation_for(
        self, option: str = "dataset"
    ) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
        """``(mean, std)`` under the ``normalisation`` option (None: ToTensor only); an option
        this dataset lacks is an error naming the allowed ones."""
        from trainables.errors import UserError

        options = self.normalisations
        if option not in options:
            raise UserError(
                f"normalisation: {option!r} is not allowed for {self.name}; allowed: "
                f"{', '.join(options)}"
            )
        return options[option]

    def trained_size(self, augment: str) -> int:
        """Input size under ``augment``; unknown presets are an error naming the allowed ones."""
        from trainables.errors import UserError

        if augment not in self.trained_sizes:
            raise UserError(
                f"augment: {augment!r} is not allowed; allowed: {', '.join(self.trained_sizes)}"
            )
        return self.trained_sizes[augment]

    def paper_upweight(self, ratio: float) -> float:
        """The paper's up-weight for ``ratio``; a ratio the paper never ran is an error."""
        from trainables.errors import UserError

        ratio = float(ratio)
        if ratio not in self.paper_upweights:
            allowed = ", ".join(f"{r:g}" for r in self.paper_upweights)
            raise UserError(
                f"ratio: {ratio:g} has no paper up-weight for {self.name}; allowed: {allowed} "
                "(or set upweight explicitly)"
            )
        return self.paper_upweights[ratio]


def _sizes(size: int, **overrides: int) -> dict[str, int]:
    sizes = dict.fromkeys(AUGMENT_PRESETS, size)
    sizes.update({k.replace("_", "-"): v for k, v in overrides.items()})
    return sizes


_PAPER_UPWEIGHTS = {0.5: 10.0, 1.0: 30.0, 2.0: 50.0, 5.0: 80.0}
# The one ratio folder of an unbiased dataset (`1pct`): the config's default ratio, so a trial
# needs no --set ratio; the number means nothing there (no sample is bias-conflicting).
UNBIASED_RATIO = 1.0

DATASETS: Registry[DatasetInfo] = Registry("dataset")
DATASETS.register(
    "cmnist",
    DatasetInfo(
        name="cmnist",
        display_name="CMNIST",
        num_classes=10,
        native_size=28,
        stored_sizes=(28,),
        trained_sizes=_sizes(28),
        model="simple_cnn",
        lr=0.01,
        paper_ratios=(0.5, 1.0, 2.0, 5.0),
        paper_upweights=_PAPER_UPWEIGHTS,
        paper_metric="unbiased",
        train_samples=55_000,
        normalise=False,
        nested_valid=False,
        long_name="Colored MNIST",
    ),
)
DATASETS.register(
    "cifar10c",
    DatasetInfo(
        name="cifar10c",
        display_name="CIFAR-10-C",
        num_classes=10,
        native_size=32,
        stored_sizes=(32,),
        trained_sizes=_sizes(32),
        model="resnet18",
        lr=0.001,
        paper_ratios=(0.5, 1.0, 2.0, 5.0),
        paper_upweights=_PAPER_UPWEIGHTS,
        paper_metric="unbiased",
        train_samples=45_000,
        normalise=True,
        nested_valid=True,
        long_name="Corrupted CIFAR-10",
        crop_flip_presets=("disent", "rest-code", "rest-intended"),
    ),
)
DATASETS.register(
    "bffhq",
    DatasetInfo(
        name="bffhq",
        display_name="BFFHQ",
        num_classes=2,
        native_size=128,
        stored_sizes=(128, 224),
        trained_sizes=_sizes(128, disent=224),
        model="resnet18",
        lr=0.001,
        paper_ratios=(0.5,),
        paper_upweights={0.5: 80.0},
        paper_metric="conflicting",
        train_samples=19_200,
        normalise=True,
        nested_valid=False,
        long_name="BFFHQ",
        crop_flip_presets=("disent",),  # REST: Resize(128) + Normalize, its flip branch is dead
        valid_at_root=True,
        valid_samples=1_000,
    ),
)

# Plain (unbiased) classification datasets for the pruning family (docs/data.md): bias = label.
# Plain MNIST-like datasets for the pruning family: real MNIST (`rest-sweep data fetch mnist`) and
# Fashion-MNIST share every fact but their names. A grid on the Sparse Double Descent seed's MNIST
# recipe sets its own model, optimiser and lr (OpenLTH's mnist_lenet_300_100); these are only the
# fallbacks.
_FASHION_MNIST = DatasetInfo(
    name="fashion_mnist",
    display_name="Fashion-MNIST",
    num_classes=10,
    native_size=28,
    stored_sizes=(28,),
    trained_sizes=_sizes(28),
    model="mlp",
    lr=0.001,
    paper_ratios=(),
    paper_upweights={},
    paper_metric="unbiased",
    train_samples=55_000,
    normalise=False,
    nested_valid=True,
    long_name="Fashion-MNIST",
    biased=False,
)
DATASETS.register(
    "mnist",
    dataclasses.replace(
        _FASHION_MNIST,
        name="mnist",
        display_name="MNIST",
        long_name="MNIST",
        sdd_normalisation=SDD_MNIST,  # SDD datasets/mnist.py:41
    ),
)
DATASETS.register("fashion_mnist", _FASHION_MNIST)
for _name, _display, _classes in (("cifar10", "CIFAR-10", 10), ("cifar100", "CIFAR-100", 100)):
    DATASETS.register(
        _name,
        DatasetInfo(
            name=_name,
            display_name=_display,
            num_classes=_classes,
            native_size=32,
            stored_sizes=(32,),
            trained_sizes=_sizes(32),
            model="resnet18",
            lr=0.001,
            paper_ratios=(),
            paper_upweights={},
            paper_metric="unbiased",
            train_samples=45_000,
            normalise=True,  # CIFAR mean/std (SDD normalises with ImageNet's; docs/data.md)
            nested_valid=True,
            long_name=_display,
            # SDD datasets/cifar10.py:54, datasets/cifar100.py:55 (normalisation=sdd)
            sdd_normalisation=SDD_IMAGENET,
            crop_flip_presets=("disent", "rest-code", "rest-intended"),
            biased=False,
        ),
    )


def dataset_info(name: str) -> DatasetInfo:
    """The registered dataset ``name`` (a one-line error lists the allowed names)."""
    return DATASETS.get(name)


def planned_train_samples(cfg: Any) -> int:
    """Samples one epoch of ``cfg`` trains on, as planning counts them (cost, makespan,
    DisEnt's step count): ``train_samples``, plus ``valid_samples`` when ``cfg.train_on_valid``
    (train + valid, docs/data.md; CIFAR-10 50,000, MNIST 60,000). Approximate: the bundle on
    disk may differ."""
    info = DATASETS.get(cfg.dataset)
    return info.train_samples + (info.valid_samples if cfg.train_on_valid else 0)
