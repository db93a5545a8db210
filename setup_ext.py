"""Configuration of the compiled ops extension ``stylegan_core._C`` (imported by setup.py).

``get_ext_modules_and_cmdclass() -> (ext_modules, cmdclass)``:

* the sources are found by name: ``stylegan_core/csrc/*.cpp`` (each op's schemas and CPU host code,
  which compiles its kernels from ``csrc/cpu/<op>.h``) and ``csrc/cuda/*.cu``, so adding an op needs
  no change here;
* the C++ CPU kernels (OpenMP, AVX2/FMA chosen at run time) are always built;
* the CUDA kernels are added when nvcc and a CUDA build of torch are present
  (``STYLEGAN_CUDA=1`` forces them, ``STYLEGAN_CUDA=0`` skips them; default: auto-detect);
* ``STYLEGAN_NO_EXT=1`` installs without any extension (the ops then use their ``ref``
  implementations, with one warning);
* a failed compile fails the install with a message that names ``STYLEGAN_NO_EXT=1``.

Environment handled for the CUDA build on machines without a GPU (measured on torch 2.14.1):
``TORCH_CUDA_ARCH_LIST`` defaults to ``STYLEGAN_DEFAULT_CUDA_ARCHS`` (else "8.0;9.0+PTX")
when no GPU is visible (otherwise torch's arch detection fails with an IndexError);
``CUDA_HOME`` defaults to the directory of nvcc's parent ``/usr/local/cuda`` layout
(torch's guess ``/usr/local`` has no CUDA headers); and the headers the pip CUDA wheels
ship in ``site-packages/nvidia/cu13/include`` (e.g. cusparse.h) are added to the include
path. ``MAX_JOBS`` defaults to 2. Compiler flags: ``-O3 -fopenmp -g0``.
"""
from __future__ import annotations

import glob
import os
import shutil
import site
import sys
import sysconfig

HERE = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join("stylegan_core", "csrc")
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"


def _log(msg: str) -> None:
    print(f"[stylegan_core._C] {msg}", file=sys.stderr, flush=True)


def _is_cuda_home(d: str | None) -> bool:
    return bool(d) and os.path.isfile(os.path.join(d, "bin", "nvcc")) and \
        os.path.isfile(os.path.join(d, "include", "cuda_runtime.h"))


def _find_cuda_home() -> str | None:
    """A CUDA toolkit folder (with bin/nvcc and include/cuda_runtime.h).

    Order: $CUDA_HOME / $CUDA_PATH, /usr/local/cuda, then the toolkit of the nvcc on PATH
    (which may be a wrapper script, e.g. /usr/local/bin/nvcc -> /usr/local/cuda-13.0; torch
    would guess /usr/local from it, which has no CUDA headers).
    """
    for env in ("CUDA_HOME", "CUDA_PATH"):
        if _is_cuda_home(os.environ.get(env)):
            return os.environ[env]
    if _is_cuda_home("/usr/local/cuda"):
        return "/usr/local/cuda"
    nvcc = shutil.which("nvcc")
    if nvcc:
        cand = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        if _is_cuda_home(cand):
            return cand
        try:  # a wrapper script that execs the real nvcc
            with open(nvcc, "rb") as fh:
                text = fh.read(4096).decode("utf-8", "replace")
            for tok in text.split():
                if tok.endswith("/bin/nvcc") and _is_cuda_home(os.path.dirname(os.path.dirname(tok))):
                    return os.path.dirname(os.path.dirname(tok))
        except OSError:
            pass
    for cand in sorted(glob.glob("/usr/local/cuda-*"), reverse=True):
        if _is_cuda_home(cand):
            return cand
    return None


def _nvidia_include_dirs() -> list[str]:
    """Header folders of the pip CUDA wheels (``site-packages/nvidia/cu*/include``, ``nvidia/*/include``)."""
    roots = []
    for getter in (lambda: [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]],
                   site.getsitepackages):
        try:
            roots.extend(getter())
        except Exception:
            pass
    out: list[str] = []
    for root in dict.fromkeys(roots):
        for pattern in ("nvidia/cu*/include", "nvidia/*/include"):
            for d in sorted(glob.glob(os.path.join(root, pattern))):
                if os.path.isfile(os.path.join(d, "cusparse.h")) and d not in out:
                    out.append(d)
    return out


def want_cuda() -> bool:
    """Whether to build the CUDA kernels (STYLEGAN_CUDA=1 forces, =0 skips, else auto-detect)."""
    flag = os.environ.get("STYLEGAN_CUDA", "").strip().lower()
    if flag in ("0", "false", "no", "off"):
        return False
    import torch

    has_torch_cuda = torch.version.cuda is not None
    nvcc = _find_cuda_home()
    if flag in ("1", "true", "yes", "on"):
        if not has_torch_cuda or nvcc is None:
            raise RuntimeError(
                "STYLEGAN_CUDA=1 but " + ("torch is a CPU-only build" if not has_torch_cuda else "nvcc was not found")
                + "; unset STYLEGAN_CUDA (or set STYLEGAN_CUDA=0) to build the CPU kernels only, or "
                "STYLEGAN_NO_EXT=1 to install without compiled ops.")
        return True
    return has_torch_cuda and nvcc is not None


def _prepare_cuda_env() -> None:
    """CUDA_HOME, TORCH_CUDA_ARCH_LIST for a build on a machine that may have no GPU."""
    home = _find_cuda_home()
    os.environ["CUDA_HOME"] = home
    import torch
    import torch.utils.cpp_extension as cpp_ext

    # torch reads CUDA_HOME when cpp_extension is first imported (possibly before us)
    if getattr(cpp_ext, "CUDA_HOME", None) != home:
        cpp_ext.CUDA_HOME = home
    if not os.environ.get("TORCH_CUDA_ARCH_LIST"):
        if torch.cuda.is_available() and torch.cuda.device_count() > 0:
            pass  # torch compiles for the visible GPUs
        else:
            archs = os.environ.get("STYLEGAN_DEFAULT_CUDA_ARCHS", DEFAULT_CUDA_ARCHS)
            os.environ["TORCH_CUDA_ARCH_LIST"] = archs
            _log(f"no GPU visible: TORCH_CUDA_ARCH_LIST={archs} (set TORCH_CUDA_ARCH_LIST to choose)")


class _FailClearly:
    """Mixin for BuildExtension: a compile error ends the install with a clear message."""

    def build_extensions(self):  # noqa: D401
        try:
            super().build_extensions()
        except BaseException as e:  # compile errors surface as CompileError/RuntimeError/SystemExit
            if isinstance(e, KeyboardInterrupt):
                raise
            msg = ("\n\n*** Building stylegan_core's compiled ops (stylegan_core._C) failed: "
                   f"{type(e).__name__}: {e}\n"
                   "*** To install without them (the ops then run their pure-PyTorch reference "
                   "implementations), set STYLEGAN_NO_EXT=1, e.g.\n"
                   "***     STYLEGAN_NO_EXT=1 pip install --no-build-isolation -e .\n"
                   "*** To skip only the CUDA kernels, set STYLEGAN_CUDA=0.\n")
            _log(msg)
            raise RuntimeError(msg) from e


def cpu_sources() -> list[str]:
    """The C++ files of the extension: ``csrc/*.cpp`` (one per op, and ``common.cpp``: the library and helpers).

    Paths are relative to the project root, as setuptools wants them.
    """
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, CSRC, "*.cpp")))


def cuda_sources() -> list[str]:
    """The CUDA files of the extension: ``csrc/cuda/*.cu`` (one per op)."""
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, CSRC, "cuda", "*.cu")))


def get_ext_modules_and_cmdclass():
    """(ext_modules, cmdclass) for setup(); both empty when STYLEGAN_NO_EXT=1."""
    if os.environ.get("STYLEGAN_NO_EXT", "0").strip() == "1":
        _log("STYLEGAN_NO_EXT=1: installing without compiled ops")
        return [], {}
    os.environ.setdefault("MAX_JOBS", "2")
    cuda = want_cuda()
    if cuda:
        _prepare_cuda_env()
    try:
        from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    except ImportError as e:  # torch missing at build time (e.g. build isolation)
        raise RuntimeError("building stylegan_core._C needs torch importable at build time: install with "
                           "`pip install --no-build-isolation`, or set STYLEGAN_NO_EXT=1 to skip the "
                           "compiled ops") from e

    sources = cpu_sources()
    cxx = ["-O3", "-fopenmp", "-g0", "-ffp-contract=fast", "-fno-trapping-math", "-fno-math-errno", "-fno-wrapv"]
    extra = dict(extra_link_args=["-fopenmp"], py_limited_api=True)
    # csrc/ on the include path: an op's file names its CPU kernels as "cpu/<op>.h" (see csrc/cpu/isa.h)
    inc = [os.path.join(HERE, CSRC)]
    if cuda:
        sources += cuda_sources()
        inc += _nvidia_include_dirs()
        _log(f"building CPU + CUDA kernels (CUDA_HOME={os.environ.get('CUDA_HOME')}, "
             f"TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST', '(visible GPUs)')}, extra includes={inc[1:]})")
        ext = CUDAExtension("stylegan_core._C", sources, include_dirs=inc, define_macros=[("WITH_CUDA", None)],
                            extra_compile_args={"cxx": cxx, "nvcc": ["-O3"]}, **extra)
    else:
        ext = CppExtension("stylegan_core._C", sources, include_dirs=inc, extra_compile_args={"cxx": cxx}, **extra)
        _log("building CPU kernels only (no CUDA: "
             + ("STYLEGAN_CUDA=0" if os.environ.get("STYLEGAN_CUDA", "").strip() == "0"
                else "nvcc or a CUDA build of torch not found") + ")")

    class BuildExt(_FailClearly, BuildExtension.with_options(use_ninja=True)):
        pass

    # Python adds "-g" via sysconfig CFLAGS; -g0 in our flags (last) wins for the C++ compiler.
    return [ext], {"build_ext": BuildExt}
