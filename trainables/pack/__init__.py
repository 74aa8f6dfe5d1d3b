"""Packed trials: N same-shape trials trained together in one process (vmap over stacked state).

``run_pack(configs, trial_dirs)`` trains them and writes each trial's folder exactly as
``run_trial`` would; ``plan_packs(configs, max_pack)`` groups a grid into packs (trials that
cannot share one run alone); ``defaults.DEFAULTS`` holds the measured pack sizes and GPU shares
per model. See docs/performance.md.
"""

from trainables.pack.defaults import DEFAULTS, PackDefaults, defaults_for
from trainables.pack.plan import can_pack, pack_key, plan_packs
from trainables.pack.run import run_pack

__all__ = [
    "DEFAULTS",
    "PackDefaults",
    "can_pack",
    "defaults_for",
    "pack_key",
    "plan_packs",
    "run_pack",
]
