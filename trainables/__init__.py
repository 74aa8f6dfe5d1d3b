"""Everything one REST trial needs, importable and runnable without Ray.

Sub-packages: ``data`` (bundles, cache, device loader, generators), ``models``,
``sparse`` (masks, densities, updaters, FLOPs), ``train`` (the loop). The public entry
point is :func:`trainables.train.run_trial`.
"""
