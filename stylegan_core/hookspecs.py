"""The whole plugin API: one pluggy hook.

A plugin is a module (or object) with a function decorated by
:data:`stylegan_core.hookimpl`::

    from stylegan_core import hookimpl

    @hookimpl
    def register(registry):
        registry.register("mapping", "my_mapping", MyMapping)

and an entry point in the group ``stylegan_core.plugins`` whose name is the
plugin's namespace (``my_plugin = "my_package.plugin"``).
"""
import pluggy

PROJECT = "stylegan_core"
ENTRY_POINT_GROUP = "stylegan_core.plugins"
#: Major version of the plugin API. A plugin module may declare
#: ``STYLEGAN_CORE_API = 1``; a different major is refused by name.
PLUGIN_API = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register(registry):
    """Register this plugin's parts: ``registry.register(kind, name, factory, params=None, doc=None)``.

    ``registry`` is a :class:`stylegan_core.registry.PluginRegistrar` bound to the
    plugin's namespace: names are bare (``"mapping"``) and become
    ``"<plugin>.mapping"``.
    """
