"""Built-in plugin ``stylegan_t``: StyleGAN-T (text-to-image).

Registered through the entry point ``stylegan_t = stylegan_plugins.stylegan_t`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is.
"""
from stylegan_core import hookimpl

STYLEGAN_CORE_API = 1


@hookimpl
def register(registry):
    pass
