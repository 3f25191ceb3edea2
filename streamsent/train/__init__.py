"""Training side of streamsent (optional `train` extra): PyTorch modules, trainer and export.

Importing this package is cheap; only `streamsent.train.modules` imports torch.
"""
