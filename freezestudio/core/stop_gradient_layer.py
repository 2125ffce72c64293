"""Kept for files saved before the layer moved: their config names this module.

The layer is `freezestudio.core.graph.stop_gradient_layer.StopGradient`, registered as
`freezestudio>StopGradient`; importing this module registers it too.
"""

from freezestudio.core.graph.stop_gradient_layer import StopGradient

__all__ = ["StopGradient"]
