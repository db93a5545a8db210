"""Built-in plugin ``stylegan_xl``: StyleGAN-XL (class-conditional StyleGAN3-T grown by super-resolution stages).

Registered through the entry point ``stylegan_xl = stylegan_plugins.stylegan_xl`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is.
"""
from stylegan_core import hookimpl

STYLEGAN_CORE_API = 1


@hookimpl
def register(registry):
    pass
