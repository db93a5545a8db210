"""Tools run as ``stylegan-run`` tasks (generate, interpolate, project, plot), the dataset tool
(``stylegan-dataset``) and the import of official checkpoints."""
