"""jaxvos: semi-supervised video object segmentation in JAX/Flax.

Efficient memory-based methods (SwiftNet, SpVOS, GAM) on one substrate, with STM and STCN as baselines. See
README.md for the command line and `../shared/DESIGN.md`-style notes in each package's docstring.
"""

__version__ = "0.1.0.dev0"
