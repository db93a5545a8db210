"""Built-in plugins, installed as ``stylegan_plugins.<name>``."""
