"""Every fixed value of a seed grid beside the value its reference used, and where it says so.

A *seed grid* is one that claims to run what a seed ran: the REST paper's tables and figure
(``paper-*``, under the ``paper`` recipe against the paper's text, and under ``rest-code``
against the public code), and the Sparse Double Descent grids (``sdd-*``) against the seed's
README commands and the OpenLTH/SDD defaults they rely on. For each trial of such a grid,
:func:`check_trial` compares every identity field the trial's method takes (axes aside) with
its :class:`Ref`: the same value, or a *marked* deviation (a reason, and the option that gives
the reference's value back), or a value the reference does not fix (``value=UNFIXED``, with
where our choice is documented). ``docs/recipes.md`` is written from these tables by
``scripts/write_recipes_doc.py``, and ``tests/test_recipes_doc.py`` fails when a grid's value and
its reference differ without a mark, when a field has no reference, or when the document is
stale.

The tables are written from the sources (the line numbers are those of the snapshot each
source names), never read back from the grids: a grid that drifts fails the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

from trainables.config import TrialConfig
from trainables.methods import param_groups

UNFIXED = object()  # the reference sets no value for this field (our choice, documented)


@dataclass(frozen=True)
class Ref:
    """The reference's value of one field, its source, and a deviation mark if we differ."""

    value: Any
    source: str
    deviation: str = ""  # why the grid's value differs, and the option that restores the source
    ours: Any = UNFIXED  # with a deviation: the one value the grid may hold instead

    def accepts(self, value: Any) -> bool:
        if self.value is UNFIXED:
            return True
        if self.deviation:
            return _same(self.ours, value) or _same(self.value, value)
        return _same(self.value, value)

    def shown(self) -> str:
        return "not fixed" if self.value is UNFIXED else _fmt(self.value)


@dataclass(frozen=True)
class Protocol:
    """The reference of a family of seed grids: which grids, under which recipe, and the
    :class:`Ref` of every field of one trial of one grid. ``refs(grid, cfg)`` derives what the
    source ran from the grid's name and the trial's axes (its ratio's up-weight, its method),
    never from the trial's other values, so a grid that drifts fails."""

    name: str
    summary: str
    grids: tuple[str, ...]
    recipe: str
    refs: Callable[[str, TrialConfig], Mapping[str, Ref]]
    per_grid: bool = False  # docs/recipes.md: one table per grid (else per method)
    # How the code behaves where no field can say it (listed in docs/recipes.md): (what, the
    # source's behaviour, ours, the option that gives the source's, or why there is none).
    behaviours: tuple[tuple[str, str, str, str], ...] = ()


# The axes and the structural fields that say *which* trial a row is, not how it trains.
AXES: frozenset[str] = frozenset({"seed", "ratio", "density", "method", "objective", "recipe"})
# Fields outside the identity that still say what a seed ran (a prune trunk's level count is
# left out of the hash so more levels extend a finished trial).
ALSO_CHECKED: tuple[str, ...] = ("levels",)
# Derived at expansion (the parent's trial hash): checked through the parent's own values.
DERIVED: frozenset[str] = frozenset({"branch_of"})


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and float(a) == float(b)
    return a == b


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value == "":
        return "''"
    return str(value)


def checked_fields(cfg: TrialConfig) -> list[str]:
    """The fields of ``cfg`` that say what it trains and how: the identity core fields and the
    identity parameters of its (effective) method (plus :data:`ALSO_CHECKED`), less the axes
    and the derived fields."""
    own = {f.name for group in cfg.method_info.params for f in fields(group)}
    grouped = {f.name for group in param_groups() for f in fields(group)}
    names = []
    for f in fields(TrialConfig):
        wanted = f.metadata.get("identity") or f.name in ALSO_CHECKED
        if not wanted or f.name in AXES or f.name in DERIVED:
            continue
        if f.name in grouped and f.name not in own:
            continue
        names.append(f.name)
    return names


@dataclass(frozen=True)
class Finding:
    """One checked field of one trial."""

    protocol: str
    grid: str
    method: str
    dataset: str
    name: str
    value: Any
    ref: Ref | None

    @property
    def ok(self) -> bool:
        return self.ref is not None and self.ref.accepts(self.value)

    @property
    def status(self) -> str:
        if self.ref is None:
            return "MISSING REFERENCE"
        if self.ref.value is UNFIXED:
            return "not fixed by the source"
        if _same(self.ref.value, self.value):
            return "same"
        return f"deviation: {self.ref.deviation}" if self.ref.deviation else "DIFFERS"


def check_trial(protocol: Protocol, grid: str, cfg: TrialConfig) -> Iterator[Finding]:
    refs = protocol.refs(grid, cfg)
    for name in checked_fields(cfg):
        yield Finding(
            protocol.name, grid, cfg.method, cfg.dataset, name, getattr(cfg, name), refs.get(name)
        )


def findings(protocols: tuple[Protocol, ...] | None = None) -> Iterator[Finding]:
    """Every checked field of every trial of every seed grid."""
    import search_spaces

    for protocol in protocols or PROTOCOLS:
        for grid in protocol.grids:
            spec = search_spaces.resolve(grid)
            expanded = search_spaces.expand(spec, {"recipe": protocol.recipe})
            for cfg in expanded.trials:
                yield from check_trial(protocol, grid, cfg)


# ---------------------------------------------------------------------- the REST paper
# Short names in the sources; each protocol's summary says what they stand for.
REST_PAPER = "paper"
REST_CODE = "code"
RIGL = "RigL paper"
DISENT = "DisEnt code"
CLEAN = Ref("none", f"{REST_PAPER} §4.1: the datasets' own labels, no label noise")
CLEAN_FRACTION = Ref(0.0, f"{REST_PAPER} §4.1: no label noise")
PAPER_LR = {"cmnist": 0.01, "cifar10c": 0.001, "bffhq": 0.001}
PAPER_MODEL = {"cmnist": "simple_cnn", "cifar10c": "resnet18", "bffhq": "resnet18"}
CODE_SCRIPT = {
    "cmnist": "cmnist_resnet18/cmnist_ResNet18_rigl1",
    "cifar10c": "cifar10c_resnet18/cifar_ResNet18_rigl1",
    "bffhq": "bffhq_resnet18/bffhq_ResNet18_rigl1",
}
# (line of --lr/--batch_size/--weight_decay, line of --model/--n_epochs, line of --density/...)
CODE_LINES = {"cmnist": (14, 15, 16), "cifar10c": (14, 15, 16), "bffhq": (7, 8, 9)}
PAPER_UPWEIGHT = {0.5: 10.0, 1.0: 30.0, 2.0: 50.0, 5.0: 80.0}


def _numerics() -> Ref:
    return Ref(
        UNFIXED,
        "neither the paper nor the code sets CUDA numerics (the code runs PyTorch's default, "
        "TF32 convolutions); our per-model choice is measured in docs/performance.md, "
        "'Precision'",
    )


def _grid_dataset(grid: str) -> str:
    """The dataset a grid's name says (``paper-table2-cmnist`` -> cmnist; Figure 3 is
    CIFAR-10-C, paper §4.4)."""
    return "cifar10c" if grid == "paper-fig3" else grid.rsplit("-", 1)[-1]


def _rest_shared(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    """Fields both recipes take from the same place: the model, the length, the batch."""
    script = f"{REST_CODE} {CODE_SCRIPT[cfg.dataset]}"
    lr_line, model_line, _ = CODE_LINES[cfg.dataset]
    model = PAPER_MODEL[cfg.dataset]
    stem = "imagenet" if model == "resnet18" else cfg.stem
    return {
        "dataset": Ref(
            _grid_dataset(grid), f"{REST_PAPER} §4.1, Tables 2-3, Figure 3 (the grid's dataset)"
        ),
        "model": Ref(
            model,
            f"{REST_PAPER} §4.3 ('Simple CNN' for CMNIST, ResNet-18 for CIFAR-10-C and BFFHQ); "
            f"{script}:{model_line}",
        ),
        "width": Ref(
            64,
            f"{REST_PAPER} §4.3 (feature maps 64, 128, 256; standard ResNet-18); {script}:"
            f"{model_line} (--resnet_width 64)",
        ),
        "stem": Ref(
            stem,
            f"{REST_CODE} models.py resnet18vw (torchvision's ImageNet stem); the Simple CNN "
            "has no stem",
        ),
        "epochs": Ref(100, f"the paper states none; {script}:{model_line} (--n_epochs 100)"),
        "batch_size": Ref(256, f"the paper states none; {script}:{lr_line} (--batch_size 256)"),
        "lr": Ref(
            PAPER_LR[cfg.dataset],
            f"{REST_PAPER} §4.3 (1e-2 CMNIST, 1e-3 the others; the text's second 'CMNIST' "
            f"is CIFAR-10-C, as the scripts show); {script}:{lr_line}",
        ),
        "precision": _numerics(),
        "init": Ref(
            "constructor",
            f"{REST_CODE} variable_width_resnet.py:148 (resnet18vw's own init: convs "
            "kaiming_normal fan_out, BN at identity; no re-initialisation); the Simple CNN "
            "keeps PyTorch's",
        ),
        "normalisation": Ref(
            "dataset",
            f"{DISENT} data/util.py and {REST_CODE} data/*_dataset.py transforms (CIFAR "
            "mean/std for CIFAR-10-C and BFFHQ, none for CMNIST; docs/data.md)",
        ),
        "selection": Ref(
            "best-valid",
            f"{REST_CODE} train.py:245-259 (the epoch of the best validation worst-group "
            "accuracy; the code falls back to the mean when it is 0, we keep the worst group: "
            "docs/presets.md)",
        ),
        "train_on_valid": Ref(
            False,
            f"{REST_PAPER} §4.1 (DisEnt's bundle holds a biased valid split); {REST_CODE} "
            "train.py:245-259 selects the epoch on it",
        ),
        "noise_type": CLEAN,
        "noise_fraction": CLEAN_FRACTION,
        "random_labels_fraction": CLEAN_FRACTION,
    }


def _rest_paper(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    refs = _rest_shared(grid, cfg)
    refs.update(
        augment=Ref(
            "disent",
            f"{REST_PAPER} §4.1 trains on DisEnt's data; {DISENT} data/util.py transforms "
            "(docs/data.md, 'Augmentation presets')",
        ),
        optimizer=Ref("adam", f"{REST_PAPER} §4.3 ('We use the Adam optimizer')"),
        momentum=Ref(0.9, f"{REST_PAPER} §4.3 (beta1 = 0.9)"),
        weight_decay=Ref(1e-4, f"{REST_PAPER} §4.3 (weight decay = 1e-4)"),
        lr_schedule=Ref("none", f"{REST_PAPER} §4.3 names no schedule"),
        # the sparse-training knobs
        sparse_init=Ref("erk", f"{REST_CODE} sparselearning/core.py:15 (default 'ERK'); {RIGL}"),
        growth=Ref("gradient", f"{REST_PAPER} §3 (RigL's gradient growth); {RIGL} §3"),
        drop_fraction=Ref(0.3, f"the paper states none; {RIGL} §4 (alpha = 0.3)"),
        drop_schedule=Ref(
            "rigl", f"the paper states none; {RIGL} §3 (cosine decay of the drop fraction)"
        ),
        drop_end=Ref(0.75, f"the paper states none; {RIGL} §4 (T_end = 75% of training)"),
        update_frequency=Ref(1000, f"{REST_PAPER} §4.3 (update frequency = 1000)"),
        reset_momentum=Ref(
            True, f"{RIGL} §3 (grown connections start at zero; their momentum is reset)"
        ),
        reset_second_moment=Ref(
            UNFIXED,
            "neither source uses Adam with RigL's reset; docs/presets.md, 'Fidelity choices' "
            "(Adam's v of a regrown weight is kept)",
        ),
        drop_rounding=Ref(
            "floor", f"{RIGL} (google-research/rigl sparse_utils: floor of the drop count)"
        ),
        dense_first_layer=Ref(
            False,
            f"{REST_CODE} sparselearning/core.py:334-347 (every weight but biases and BatchNorm is masked)",
        ),
        dense_last_layer=Ref(False, f"{REST_CODE} sparselearning/core.py:334-347"),
        # the reweighting
        reweight=Ref("loss", f"{REST_PAPER} §3, Eq. 6 (a per-sample weighted loss)"),
        upweight=Ref(
            80.0 if cfg.dataset == "bffhq" else PAPER_UPWEIGHT.get(float(cfg.ratio), UNFIXED),
            f"{REST_PAPER} §4.3 (10, 30, 50, 80 at 0.5, 1, 2, 5%; 80 for BFFHQ)",
        ),
        reweight_normalise=Ref(
            False,
            f"{REST_PAPER} §3, Eq. 6 (the un-normalised mean of beta * loss)",
            deviation="divided by E[beta] so coupled weight decay keeps its strength under "
            "Adam (docs/presets.md, 'Fidelity choices'); --set reweight_normalise=false is "
            "the literal Eq. 6",
            ours=True,
        ),
    )
    own = METHOD_REFS.get(cfg.method)
    return {**refs, **own(cfg)} if own else refs


# DisEnt's public commands (its README.md:87-90, 110-113, 130): per dataset and ratio, (line,
# lr, lambda_dis_align, lambda_swap_align, lambda_swap, lr_gamma); every one passes
# --curr_step=10000 --use_lr_decay --lr_decay_step=10000; BFFHQ keeps train.py:26's lr_gamma 0.1.
DISENT_README: dict[tuple[str, float], tuple[int, float, float, float, float, float]] = {
    **{
        ("cmnist", r): (line, 0.01, 10.0, 10.0, 1.0, 0.5)
        for r, line in zip((0.5, 1.0, 2.0, 5.0), (87, 88, 89, 90), strict=True)
    },
    ("cifar10c", 0.5): (110, 0.0005, 1.0, 1.0, 1.0, 0.5),
    ("cifar10c", 1.0): (111, 0.001, 5.0, 5.0, 1.0, 0.5),
    ("cifar10c", 2.0): (112, 0.001, 5.0, 5.0, 1.0, 0.5),
    ("cifar10c", 5.0): (113, 0.001, 1.0, 1.0, 1.0, 0.5),
    ("bffhq", 0.5): (130, 0.0001, 2.0, 2.0, 0.1, 0.1),
}
DISENT_BATCH = {"cmnist": 256, "cifar10c": 256, "bffhq": 64}  # DisEnt learner.py:23-25


def _disent(cfg: TrialConfig) -> dict[str, Ref]:
    """DisEnt trials run DisEnt's own published commands (REST compares against them)."""
    line, lr, dis, swap_align, swap, gamma = DISENT_README[(cfg.dataset, float(cfg.ratio))]
    command = f"{DISENT} README.md:{line}"
    return {
        "lr": Ref(lr, f"{command} (--lr)"),
        "batch_size": Ref(
            DISENT_BATCH[cfg.dataset],
            f"{DISENT} learner.py:23-25 (data2batch_size; train.py:11's --batch_size is never "
            "read)",
        ),
        "epochs": Ref(
            "50,000 steps",
            f"{DISENT} train.py:18 (--num_steps 500 * 100)",
            deviation="the REST tables give every method the same 100 epochs (REST's scripts, "
            "e.g. cmnist_ResNet18_dense:13), as the paper compares them; --set epochs=E gives "
            "DisEnt's length (E = 50,000 x batch / train images)",
            ours=100,
        ),
        "weight_decay": Ref(0.0, f"{DISENT} train.py:13 (default; no command sets it)"),
        "optimizer": Ref("adam", f"{DISENT} learner.py:435-446 (Adam)"),
        "lr_schedule": Ref("none", f"{DISENT} learner.py:447-449 (its own StepLR: disent_lr_*)"),
        "disent_lambda_dis": Ref(dis, f"{command} (--lambda_dis_align)"),
        "disent_lambda_swap_align": Ref(swap_align, f"{command} (--lambda_swap_align)"),
        "disent_lambda_swap": Ref(swap, f"{command} (--lambda_swap)"),
        "disent_lr_gamma": Ref(gamma, f"{command} (--lr_gamma; BFFHQ: train.py:26)"),
        "disent_swap_step": Ref(10_000, f"{command} (--curr_step=10000); learner.py:539"),
        "disent_lr_decay_step": Ref(10_000, f"{command} (--lr_decay_step=10000); learner.py:574"),
        "ema_alpha": Ref(0.7, f"{DISENT} train.py:30"),
        "gce_q": Ref(0.7, f"{DISENT} learner.py:451 (GeneralizedCELoss(q=0.7))"),
    }


MRM_RECONSTRUCTION = "MRM has no public code: reconstruction, docs/methods.md (MRM)"


def _mrm(cfg: TrialConfig) -> dict[str, Ref]:
    """MRM's own knobs: a reconstruction, so each is ours, documented choice by choice; the
    penalty's form is Csordás' mask_loss, which MRM builds on."""
    refs = {
        name: Ref(UNFIXED, MRM_RECONSTRUCTION)
        for name in (
            "mrm_alpha",
            "mrm_allocation",
            "mrm_erm_fraction",
            "mrm_probe_fraction",
            "mrm_probe_lr",
            "mrm_logit_init",
            "mrm_tau",
        )
    }
    refs["mrm_penalty"] = Ref(
        "logit_sum",
        "robertcsordas/modules masked_model.py:224-234 (mask_loss: alpha times the sum of the "
        "logits); REST paper Eq. 7",
    )
    return refs


METHOD_REFS: dict[str, Callable[[TrialConfig], dict[str, Ref]]] = {
    "disent": _disent,
    "mrm": _mrm,
}


def _rest_code(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    refs = _rest_shared(grid, cfg)
    script = f"{REST_CODE} {CODE_SCRIPT[cfg.dataset]}"
    lr_line, _, sparse_line = CODE_LINES[cfg.dataset]
    refs.update(
        augment=Ref(
            "rest-code",
            f"{REST_CODE} data/*_dataset.py transforms (the split-string test; docs/data.md)",
        ),
        optimizer=Ref("sgd", f"{REST_CODE} train.py:131-135 (torch.optim.SGD)"),
        momentum=Ref(0.9, f"{REST_CODE} train.py:134"),
        weight_decay=Ref(0.0, f"{script}:{lr_line} (--weight_decay 0.0)"),
        lr_schedule=Ref(
            "plateau", f"{REST_CODE} train.py:136-144 (ReduceLROnPlateau); {script}:{sparse_line}"
        ),
        sparse_init=Ref("erk", f"{REST_CODE} sparselearning/core.py:15"),
        growth=Ref("gradient", f"{REST_CODE} sparselearning/core.py:16"),
        drop_fraction=Ref(0.5, f"{REST_CODE} sparselearning/core.py:19 (--death-rate 0.50)"),
        drop_schedule=Ref("rest", f"{REST_CODE} sparselearning/core.py:22 (cosine); train.py:150"),
        update_frequency=Ref(1000, f"{script}:{sparse_line}"),
        reset_momentum=Ref(
            False,
            f"{REST_CODE} sparselearning/core.py (apply_mask leaves the momentum buffer; docs/presets.md)",
        ),
        drop_rounding=Ref(
            "ceil",
            f"{REST_CODE} sparselearning/core.py (math.ceil of the removal count; docs/presets.md)",
        ),
        dense_first_layer=Ref(False, f"{REST_CODE} sparselearning/core.py:334-347"),
        dense_last_layer=Ref(False, f"{REST_CODE} sparselearning/core.py:334-347"),
        drop_end=Ref(UNFIXED, "unused: the code's cosine schedule runs over all steps"),
        reset_second_moment=Ref(UNFIXED, "unused: the code's SGD has no second moment"),
        reweight_normalise=Ref(UNFIXED, "unused: resampling weights no loss"),
        reweight=Ref("resample", f"{REST_CODE} data/dro_dataset.py:63-71 (WeightedRandomSampler)"),
        upweight=Ref(
            80.0,
            f"{REST_CODE} data/dro_dataset.py:66 (80 hard-coded; --lambda_upweight is never read)",
        ),
    )
    return refs


# ---------------------------------------------------------------------- Sparse Double Descent
README = "README"  # ../shared/seeds/sparse_double_descent_README.md
SDD = "SDD"  # he-zh/sparse-double-descent at f9bbdcc
SDD_RESNET = f"{SDD} models/cifar_pytorch_resnet.py"
SDD_MLP = f"{SDD} models/mnist_mlp.py"
STATIC_MASKS = Ref(UNFIXED, "unused by prune: its masks come from the pruning levels, not DST")


def _one_of(value: Any, allowed: tuple[Any, ...], source: str) -> Ref:
    """An axis the seed runs at several values: the trial's value if the seed ran it."""
    return Ref(value if value in allowed else " / ".join(map(str, allowed)), source)


RETRAIN_POLICIES = ("lottery", "lr_rewind", "finetune", "scratch")


def _retrain(grid: str, cfg: TrialConfig) -> Ref:
    """README 1.1-1.4 run the four policies (the retrain grids' axis); every other SDD command
    is a lottery run."""
    if grid.startswith("sdd-retrain-"):
        return _one_of(cfg.retrain, RETRAIN_POLICIES, f"{README}:54-68 (1.1-1.4)")
    return Ref("lottery", f"{README}:72,76,81,85,90,94 (main.py lottery, lottery_branch)")


def _sdd_cifar(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    lottery = cfg.retrain == "lottery"  # the retrain grid's axis; the other grids pin it
    noise_grid = grid == "sdd-noise-cifar10"
    cifar100 = grid.endswith("-cifar100")
    return {
        "dataset": Ref(
            "cifar100" if cifar100 else "cifar10",
            f"{README}:56 (--dataset_name=cifar10); README 4: {README}:81,85 (cifar100)",
        ),
        "model": Ref("resnet18", f"{README}:56 (--default_hparams=cifar_pytorch_resnet_18)"),
        "width": Ref(64, f"{SDD_RESNET}:118-152 (cifar_pytorch_resnet_18: base width 64)"),
        "stem": Ref("cifar", f"{SDD_RESNET}:24-27 (3x3 stride-1 stem, no max-pool)"),
        "init": Ref(
            "openlth",
            f"{SDD_RESNET}:122-123 (model_init=kaiming_normal, batchnorm_init=uniform, applied "
            "at :73; reference §1.9)",
        ),
        "normalisation": Ref(
            "sdd", f"{SDD} datasets/cifar10.py:54, datasets/cifar100.py:55 (ImageNet mean/std)"
        ),
        "augment": Ref(
            "disent", f"{SDD} datasets/cifar10.py:43 (crop 32 pad 4 + flip, train only)"
        ),
        "optimizer": Ref("sgd", f"{SDD_RESNET}:132"),
        "lr": Ref(0.1, f"{README}:56 (--lr=0.1)"),
        "momentum": Ref(0.9, f"{SDD_RESNET}:133"),
        "weight_decay": Ref(1e-4, f"{SDD_RESNET}:137"),
        "lr_schedule": Ref("none", "the step schedule is milestones and gamma (prune)"),
        "batch_size": Ref(128, f"{SDD_RESNET}:128"),
        "epochs": Ref(
            320 if cfg.branch == "redense" else 160,
            f"{README}:56 (--training_steps=160ep per level); re-dense: {README}:85 "
            "(--retrain_t_training_steps=320ep)",
        ),
        "milestones": Ref("80,120", f"{README}:56 (--milestone_steps=80ep,120ep)"),
        "gamma": Ref(0.1, f"{README}:56 (--gamma=0.1)"),
        "warmup_steps": Ref("", f"{SDD_RESNET}:118-152 (no warmup_steps)"),
        "prune_fraction": Ref(0.2, f"{SDD_RESNET}:143"),
        "criterion": (
            _one_of(cfg.criterion, ("magnitude", "gradient", "random"), f"{README}:70 (2)")
            if grid == "sdd-criteria-cifar10"
            else Ref("magnitude", f"{SDD_RESNET}:142")
        ),
        "prune_scope": Ref("global", f"{SDD_RESNET}:144"),
        "dense_first_layer": Ref(False, f"{SDD_RESNET}:141-145 (no layer ignored; reference §1.4)"),
        "dense_last_layer": Ref(False, f"{SDD_RESNET}:141-145 (no layer ignored; reference §1.4)"),
        "retrain": _retrain(grid, cfg),
        "levels": Ref(
            30 if cfg.branch == "none" else UNFIXED,
            f"{README}:56,81,90 (--levels=30)" if cfg.branch == "none" else "not read by a branch",
        ),
        "rewind_step": Ref(
            1000 if lottery else 0,
            f"{README}:56,72,76,81,90 (--rewinding_steps=1000it; only lottery rewinds)",
        ),
        "finetune_lr": Ref(0.001, f"{README}:60 (--finetune_lr=0.001)"),
        "finetune_steps": Ref("", f"{README}:60 (--finetune_training_steps=160ep = epochs)"),
        "oneshot": Ref(
            grid == "sdd-oneshot-cifar10",
            f"{README}:100 (6: the one-shot branch; the oneshot grid runs it on CIFAR-10)",
        ),
        "gradient_batches": Ref(1, "reference §1.4 (the gradient score uses one mini-batch)"),
        "noise_type": _one_of(
            cfg.noise_type,
            ("symmetric", "asymmetric", "pairflip") if noise_grid else ("none",),
            f"{README}:74-76 (3: --noisy_labels_type); the other commands use random labels",
        ),
        "noise_fraction": Ref(
            0.2 if noise_grid else 0.0, f"{README}:76 (--noisy_labels_fraction=0.2)"
        ),
        "random_labels_fraction": Ref(
            0.0 if noise_grid else 0.4 if cifar100 else 0.2,
            f"{README}:56,60,64,68,72,90 (--random_labels_fraction=0.2); README 4 on CIFAR-100: "
            f"{README}:81,85 (0.4)",
        ),
        "train_on_valid": Ref(
            True, f"{SDD} datasets/cifar10.py:33 (all 50,000 training images; reference §1.9)"
        ),
        "selection": Ref("last", f"{SDD} show_result.py:69 (the last epoch's test accuracy)"),
        "precision": _numerics(),
        **{name: STATIC_MASKS for name in SPARSE_KNOBS},
    }


def _sdd_mnist(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    no_source = "no MNIST command in the seed: the README's CIFAR-10 value (docs/methods.md)"
    return {
        "dataset": Ref("mnist", f"{SDD_MLP}:79"),
        "levels": Ref(UNFIXED, f"{no_source}: 30"),
        "model": Ref("mlp", f"{SDD_MLP}:73 (mnist_mlp_300_100: LeNet-300-100)"),
        "width": Ref(64, "unused by the MLP"),
        "stem": Ref("imagenet", "unused by the MLP"),
        "init": Ref(
            "openlth", f"{SDD_MLP}:74-75 (model_init=kaiming_normal, batchnorm_init=uniform)"
        ),
        "normalisation": Ref("sdd", f"{SDD} datasets/mnist.py:41 (mean 0.1307, std 0.3081)"),
        "augment": Ref("none", f"{SDD} datasets/mnist.py:29 (no augmentation)"),
        "optimizer": Ref("sgd", f"{SDD_MLP}:84"),
        "lr": Ref(0.1, f"{SDD_MLP}:85"),
        "momentum": Ref(0.0, f"{SDD} foundations/hparams.py:163 (TrainingHparams default)"),
        "weight_decay": Ref(0.0, f"{SDD} foundations/hparams.py:168 (None)"),
        "lr_schedule": Ref("none", "the step schedule is milestones and gamma (prune)"),
        "batch_size": Ref(128, f"{SDD_MLP}:80"),
        "epochs": Ref(160, f"{SDD_MLP}:86 (160ep; OpenLTH's mnist_lenet trains 40ep)"),
        "milestones": Ref("", f"{SDD_MLP}:83-87 (constant lr)"),
        "gamma": Ref(0.1, "unused: no milestone"),
        "warmup_steps": Ref("", f"{SDD_MLP}:83-87 (no warmup_steps)"),
        "prune_fraction": Ref(0.2, f"{SDD_MLP}:91"),
        "criterion": Ref("magnitude", f"{SDD_MLP}:90"),
        "prune_scope": Ref("global", f"{SDD_MLP}:92"),
        "dense_first_layer": Ref(False, f"{SDD_MLP}:93 (only fc.weight is ignored)"),
        "dense_last_layer": Ref(True, f"{SDD_MLP}:93 (pruning_layers_to_ignore='fc.weight')"),
        "retrain": _retrain(grid, cfg),
        "rewind_step": Ref(0, f"{SDD} experiments/lottery/desc.py:49 (no rewinding by default)"),
        "finetune_lr": Ref(0.1, f"{SDD_MLP}:98"),
        "finetune_steps": Ref("", f"{SDD_MLP}:99 (160ep = epochs)"),
        "oneshot": Ref(False, "iterative pruning (the one-shot branch is README 6's)"),
        "gradient_batches": Ref(1, "reference §1.4"),
        "noise_type": Ref("none", f"random labels instead ({no_source})"),
        "noise_fraction": Ref(0.0, no_source),
        "random_labels_fraction": Ref(0.2, f"{README}:56 ({no_source})"),
        "train_on_valid": Ref(True, f"{SDD} datasets/mnist.py:19 (all 60,000 training images)"),
        "selection": Ref("last", f"{SDD} show_result.py:69"),
        "precision": _numerics(),
        **{name: STATIC_MASKS for name in SPARSE_KNOBS},
    }


def _sdd(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    refs = _sdd_mnist(grid, cfg) if grid.endswith("-mnist") else _sdd_cifar(grid, cfg)
    return {**refs, **_sdd_branch(grid, cfg)}


SPARSE_KNOBS = (
    "sparse_init",
    "growth",
    "drop_fraction",
    "drop_schedule",
    "drop_end",
    "update_frequency",
    "reset_momentum",
    "reset_second_moment",
    "drop_rounding",
)


REDENSE_LEVELS = (0, 3, 6, 9, 12, 15, 19, 22, 26)  # README:85 --levels=0,3,6,9,12,15,19,22,26
REINIT_LEVELS = tuple(range(1, 28))  # README:94 --levels=1-27


def _sdd_branch(grid: str, cfg: TrialConfig) -> dict[str, Ref]:
    """The branch fields, from the grid's name: none on a trunk; README 4's re-dense branch;
    README 5's random re-initialisation, with OpenLTH's random pruning beside it."""
    redense = grid.startswith("sdd-redense-")
    if redense or grid.startswith("sdd-reinit-"):
        levels = REDENSE_LEVELS if redense else REINIT_LEVELS
        source = f"{README}:85 (4: lottery_branch retrain)" if redense else f"{README}:94 (5)"
        branch = (
            Ref("redense", f"{source}: re-dense training")
            if redense
            else _one_of(
                cfg.branch,
                ("reinit", "random_prune"),
                f"{source}: randomly_reinitialize; random_prune is OpenLTH's randomly_prune "
                "branch beside it (reference §1.7, start_at=rewind)",
            )
        )
        return {
            "branch": branch,
            "branch_level": _one_of(cfg.branch_level, levels, f"{source} (--levels)"),
            "redense_step": Ref(
                "160ep" if redense else "",
                f"{README}:85 (--retrain_t_regain_pruned_weights_steps=160ep)"
                if redense
                else "only re-dense regains weights",
            ),
            "redense_lr": Ref(
                UNFIXED, "retired: after the regain the lr follows milestones (docs/methods.md)"
            ),
        }
    trunk = "a trunk run (no branch)"
    return {
        "branch": Ref("none", trunk),
        "branch_level": Ref(0, trunk),
        "redense_step": Ref("", trunk),
        "redense_lr": Ref(UNFIXED, "retired: unused (docs/methods.md, prune)"),
    }


PROTOCOLS: tuple[Protocol, ...] = (
    Protocol(
        name="REST paper",
        summary="the REST paper's text (Zhao et al., ECML PKDD 2023, §3, §4.3), where it is "
        "silent the public code (code = zhao1402072392/REST at a60e6c7: its run scripts, "
        "train.py, sparselearning/core.py), and the RigL paper (Evci et al., ICML 2020) for "
        "the prune-and-grow schedule the paper adopts; DisEnt code = "
        "kakaoenterprise/Learning-Debiased-Disentangled",
        grids=(
            "paper-table2-cmnist",
            "paper-table2-cifar10c",
            "paper-table2-bffhq",
            "paper-table3-cmnist",
            "paper-table3-cifar10c",
            "paper-table3-bffhq",
            "paper-fig3",
        ),
        recipe="paper",
        refs=_rest_paper,
        behaviours=(
            (
                "sparse masks",
                "the code samples Bernoulli masks, so a layer's density is only close to its "
                "ERK target",
                "exactly round(d_l N_l) weights per layer",
                "none: docs/presets.md, 'Shared by both recipes'",
            ),
            (
                "epoch selection",
                "best validation worst-group accuracy, the mean accuracy when that is 0 "
                "(code train.py:245-259)",
                "the worst group always",
                "selection=last reports the last epoch instead",
            ),
        ),
    ),
    Protocol(
        name="Sparse Double Descent",
        summary="the seed's README commands (README = sparse_double_descent_README.md, "
        "'Exemplary Runs') over the OpenLTH/SDD defaults they rely on (SDD = "
        "he-zh/sparse-double-descent at f9bbdcc; reference = ../shared/reference/"
        "sdd_openlth.md)",
        grids=(
            "sdd-retrain-cifar10",
            "sdd-criteria-cifar10",
            "sdd-noise-cifar10",
            "sdd-oneshot-cifar10",
            "sdd-redense-cifar10",
            "sdd-reinit-cifar10",
            "sdd-lottery-cifar100",
            "sdd-redense-cifar100",
            "sdd-retrain-mnist",
        ),
        recipe="paper",
        refs=_sdd,
        per_grid=True,
        behaviours=(
            (
                "re-dense: the regained weights",
                "pruned weights are zeroed only in the forward pass, so at the regain they hold "
                "their last optimizer update (reference §1.6)",
                "exactly zero, optimizer state kept",
                "none: SDD's value is a side effect of its masking, not a choice",
            ),
            (
                "random_prune: the start weights",
                "OpenLTH multiplies the rewind weights by the trunk's mask, so most randomly "
                "kept weights start at zero (randomly_prune.py)",
                "the rewind weights under the random mask",
                "none yet",
            ),
            (
                "symmetric and pair-flip noise (noise grid)",
                "sampled per example, so about 20 % flipped",
                "exactly ceil(0.2 n_c) per class (one s.d. of SDD's draw is about 0.2 points)",
                "none yet",
            ),
            (
                "initial weights",
                "OpenLTH's kaiming_normal and BatchNorm U(0, 1) draws in its module order",
                "the same distributions (init=openlth), drawn in our order: not bit-identical",
                "none: the random streams differ anyway",
            ),
        ),
    ),
    Protocol(
        name="REST public code",
        summary="the public code (code = zhao1402072392/REST at a60e6c7: the run scripts, "
        "run_expt.py, train.py, data/dro_dataset.py, sparselearning/core.py)",
        grids=("paper-table3-cmnist", "paper-table3-cifar10c", "paper-table3-bffhq"),
        recipe="rest-code",
        refs=_rest_code,
    ),
)


# ---------------------------------------------------------------------- docs/recipes.md
_SEVERITY = {"same": 0, "not fixed by the source": 1, "deviation": 2, "DIFFERS": 3}


def _severity(status: str) -> int:
    return _SEVERITY.get(status.split(":")[0], 4)


def _per_dataset(values: Mapping[str, set[str]]) -> str:
    """``{dataset: {shown values}}`` as one cell: one list if every dataset agrees."""
    rendered = {d: ", ".join(sorted(v)) for d, v in values.items()}
    if len(set(rendered.values())) == 1:
        return next(iter(rendered.values()))
    return "; ".join(f"{d}: {text}" for d, text in rendered.items())


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(protocols: tuple[Protocol, ...] | None = None) -> str:
    """``docs/recipes.md``: per protocol and method (per grid and method where the protocol
    says so), every checked field's value, the
    reference's, its source and whether they agree (a marked deviation says why)."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    order: dict[str, list[str]] = {}
    per_grid = {p.name for p in protocols or PROTOCOLS if p.per_grid}
    for finding in findings(protocols):
        table = finding.method
        if finding.protocol in per_grid:
            table = f"{finding.grid}` · `{finding.method}"
        key = (finding.protocol, table, finding.name)
        row = rows.setdefault(key, {"ours": {}, "ref": {}, "sources": {}, "status": "same"})
        row["ours"].setdefault(finding.dataset, set()).add(_fmt(finding.value))
        shown = finding.ref.shown() if finding.ref else "—"
        row["ref"].setdefault(finding.dataset, set()).add(shown)
        source = finding.ref.source if finding.ref else "(none)"
        row["sources"].setdefault(finding.dataset, set()).add(source)
        if _severity(finding.status) > _severity(row["status"]):
            row["status"] = finding.status
        tables = order.setdefault(finding.protocol, [])
        if table not in tables:
            tables.append(table)
    lines = [
        "# Recipes: every seed grid's fixed values beside their source",
        "",
        "Generated by `python scripts/write_recipes_doc.py` from `search_spaces/references.py`;",
        "do not edit by hand (`tests/test_recipes_doc.py` fails when this file is stale).",
        "",
        "For every trial of every seed grid, each field that says how the trial trains (the",
        "identity fields its method takes, and a trunk's level count; the axes seed, ratio,",
        "density and method aside) is compared with the value its source used. The expected",
        "value is derived from the grid's name and the trial's axes, never from the trial's",
        "other values. **same**: the grid runs the source's value. **deviation**: the grid",
        "differs on purpose, with one named value; the reason and the option that restores",
        "the source's value are given. **not fixed by the source**: the source sets no value",
        "(our choice, and where it is documented). The test fails on a value",
        "that differs without a mark and on a field with no reference.",
        "",
    ]
    for protocol in protocols or PROTOCOLS:
        lines += [
            f"## {protocol.name}",
            "",
            f"Source: {protocol.summary}. Recipe `{protocol.recipe}`; grids: "
            + ", ".join(f"`{g}`" for g in protocol.grids)
            + ".",
            "",
        ]
        for method in order.get(protocol.name, []):
            lines += [
                f"### `{method}`",
                "",
                "| field | grid | source's value | source | status |",
                "|---|---|---|---|---|",
            ]
            for (name_protocol, name_method, name), row in rows.items():
                if (name_protocol, name_method) != (protocol.name, method):
                    continue
                cells = [
                    f"`{name}`",
                    _per_dataset(row["ours"]),
                    _per_dataset(row["ref"]),
                    _per_dataset(row["sources"]),
                    row["status"],
                ]
                lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
            lines.append("")
        if protocol.behaviours:
            lines += [
                "### Behaviour no field states",
                "",
                "| what | the source | ours | option |",
                "|---|---|---|---|",
                *("| " + " | ".join(_cell(c) for c in row) + " |" for row in protocol.behaviours),
                "",
            ]
    return "\n".join(lines).rstrip() + "\n"
