"""Build entry of stylegan-core (setuptools).

Packages: ``stylegan_core`` and the built-in plugins in ``plugins/``, installed as
``stylegan_plugins.<name>``. Every built-in plugin is registered through the
entry-point group ``stylegan_core.plugins``, exactly as a third party's is.
The compiled ops (``stylegan_core._C``) are configured in ``setup_ext.py``.
"""
import os
import sys

from setuptools import find_packages, setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

BUILTIN_PLUGINS = ["stylegan2", "stylegan3", "projected_gan", "stylegan1", "stylegan_xl", "stylegan_t"]

ext_modules, cmdclass = [], {}
if os.environ.get("STYLEGAN_NO_EXT", "0") != "1" and os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "setup_ext.py")):
    from setup_ext import get_ext_modules_and_cmdclass

    ext_modules, cmdclass = get_ext_modules_and_cmdclass()

core_packages = find_packages(include=["stylegan_core", "stylegan_core.*"])
plugin_packages = ["stylegan_plugins"] + [
    "stylegan_plugins." + p for p in find_packages(where="plugins")
]

setup(
    name="stylegan-core",
    version="0.1.0",
    description="The StyleGAN family built from registered, swappable parts",
    long_description=open("README.md", encoding="utf-8").read() if os.path.exists("README.md") else "",
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=core_packages + plugin_packages,
    package_dir={"stylegan_plugins": "plugins"},
    package_data={
        "stylegan_core": ["registry.yaml", "spec/*.yaml", "presets/*.yaml", "data/assets/*", "metrics/assets/*", "csrc/**/*",
                          "official/*.json", "tools/viewer/*"],
        "stylegan_plugins": ["*/*.yaml"],
    },
    include_package_data=True,
    install_requires=[
        "torch>=2.4,<=2.14.1",
        "torchvision>=0.19,<=0.29.1",
        "pluggy>=1.5",
        "pydantic>=2.6,<3",
        "PyYAML>=6.0",
        "safetensors>=0.4",
        "numpy>=1.24",
        "scipy>=1.10",
        "Pillow>=9.0",
        "tqdm>=4.60",
        # the FID/KID/IS/sFID Inception and the precision/recall VGG16 pass (torch-fidelity's definitions), the
        # LPIPS linear weights of PPL and projection (shipped in lpips); both pure Python over torch/torchvision
        "torch-fidelity>=0.3",
        "lpips>=0.1.4",
    ],
    extras_require={
        # feature-network tests; pytorch-fid: the FID Inception blocks are compared against it
        "test": ["pytest>=7", "hypothesis>=6", "timm>=1.0", "open-clip-torch>=3.0", "pytorch-fid>=0.3",
                 "dill>=0.3.4",  # dill: StyleGAN-XL snapshots are written with it (the library never imports it)
                 # export, serve and the tensorboard logger are tested; playwright drives the system's Chromium
                 "onnx>=1.18", "onnxscript>=0.5", "onnxruntime>=1.20", "fastapi>=0.115", "uvicorn>=0.30",
                 "tensorboard>=2.14", "playwright>=1.45"],
        "timm": ["timm>=1.0"],
        "clip": ["open-clip-torch>=3.0"],
        "xformers": ["xformers"],
        "video": ["imageio>=2.9", "imageio-ffmpeg>=0.4"],  # MP4 for interpolate/project (else GIF)
        # stylegan-run DIR export --format onnx: torch.onnx's dynamo exporter and the onnxruntime check
        "export": ["onnx>=1.18", "onnxscript>=0.5", "onnxruntime>=1.20"],
        "serve": ["fastapi>=0.115", "uvicorn>=0.30"],  # stylegan-run DIR serve: the viewer's web app
        "tensorboard": ["tensorboard>=2.14"],  # the core.tensorboard logger (torch.utils.tensorboard)
    },
    entry_points={
        "console_scripts": [
            "stylegan-build=stylegan_core.cli.build:main",
            "stylegan-run=stylegan_core.cli.run:main",
            "stylegan-plugins=stylegan_core.cli.plugins:main",
            "stylegan-dataset=stylegan_core.cli.dataset:main",
            "stylegan-weights=stylegan_core.cli.weights:main",
        ],
        "stylegan_core.plugins": [f"{p} = stylegan_plugins.{p}" for p in BUILTIN_PLUGINS],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
