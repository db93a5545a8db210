"""stylegan-core: the StyleGAN family built from registered, swappable parts."""
__version__ = "0.1.0"

from .hookspecs import hookimpl  # noqa: E402,F401

__all__ = ["hookimpl", "__version__"]
