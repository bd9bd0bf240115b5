"""sgewrap: remote-startup wrappers for Grid Engine.

The package is imported on the hot path of every ``qrsh``: it must stay
stdlib-only and import nothing it does not need.  The public surface is the
calling-convention table (:mod:`sgewrap.conventions`), the startup methods
(:mod:`sgewrap.methods`) and one exception type, :class:`WrapperError`.
"""
from .errors import WrapperError

__version__ = "0.3.0"
__all__ = ["WrapperError", "__version__"]
