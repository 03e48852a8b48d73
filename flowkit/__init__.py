"""flowkit: rectified flow, flow matching and diffusion — training, reflow, few-step
sampling and evaluation.

Subpackages are imported on demand (``import flowkit.solvers``) so that
``import flowkit`` stays light.
"""

__version__ = "0.1.0"
