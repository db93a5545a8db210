"""Command-line tools: stylegan-build, stylegan-run, stylegan-plugins."""
