"""Training SOMA on real Sentinel-1/2 pairs (`soma train`): data, augmentation, the resumable loop.

Consumes `model`; nothing in `model`, `pipeline` or `flows` imports it.
"""
