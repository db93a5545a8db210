"""Tools run as ``stylegan-run`` tasks: generate, ..."""
