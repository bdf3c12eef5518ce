"""Reusable Flax blocks with parameters; names mirror the PyTorch references so conversion is a rename table."""
