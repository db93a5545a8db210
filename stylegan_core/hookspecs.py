"""The whole plugin API: the pluggy hooks.

A plugin is a module (or object) with a function decorated by
:data:`stylegan_core.api.hookimpl` (the public API for plugins, :mod:`stylegan_core.api`)::

    from stylegan_core.api import hookimpl

    @hookimpl
    def register(registry):
        registry.register("mapping", "my_mapping", MyMapping)

and an entry point in the group ``stylegan_core.plugins`` whose name is the
plugin's namespace (``my_plugin = "my_package.plugin"``).

``register`` is the one hook every plugin implements. ``convert_official_network``
is optional (plugin API 1 unchanged: a plugin without it loads as before); a
generation whose official checkpoints can be imported implements it. A hook
implementation that matches no hook here (a misspelt name) makes the plugin fail
to load, named (pluggy's ``check_pending``).

A plugin module may also declare ``STYLEGAN_CORE_API = 1`` (the plugin API it was
written for) and ``STYLEGAN_PLUGIN_REQUIRES = ["stylegan2", ...]``: the plugins it
builds on, registered before it (see :mod:`stylegan_core.plugins`). The parts it
registers must derive from their kind's base class in :mod:`stylegan_core.interfaces`;
optional capabilities are declared there too.
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


@hookspec(firstresult=True)
def convert_official_network(record):
    """Convert one network of an official NVIDIA pickle into this plugin's parts, or return None.

    ``record`` is a :class:`stylegan_core.official.records.PersistentRecord`, read
    without running any code of the pickle: ``record.key`` (``'G_ema'``, ``'D'``, ...),
    ``record.class_name`` (bare, e.g. ``'Generator'``: the official module is not
    recorded), ``record.init_args`` / ``record.init_kwargs`` (the recorded constructor
    arguments, plain data), ``record.attributes`` and ``record.state_dict()`` (the
    official weights by ``state_dict()`` name).

    Return None unless the record is one of this plugin's official networks (tell
    generations apart by the weights' names and the constructor arguments, not by the
    class name alone: StyleGAN2 and StyleGAN3 both have a ``Generator``). Otherwise return
    a :class:`stylegan_core.official.convert.OfficialConversion`: the role
    (``generator`` or ``discriminator``), the spec sections that rebuild it from
    registered parts, and the weights under the names of the module those sections build.
    Raise (``ValueError``) for a network of this plugin that cannot be represented.
    Core asks every plugin that implements the hook and refuses a record claimed twice.
    """
