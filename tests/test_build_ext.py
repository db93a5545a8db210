"""How the compiled ops are built (setup_ext.py) and what happens without them (ops/_dispatch.py)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

from stylegan_core import ops
from stylegan_core.ops import _dispatch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
import setup_ext  # noqa: E402


def test_no_ext_builds_nothing(monkeypatch):
    monkeypatch.setenv("STYLEGAN_NO_EXT", "1")
    assert setup_ext.get_ext_modules_and_cmdclass() == ([], {})


def test_cpu_only_extension(monkeypatch):
    monkeypatch.delenv("STYLEGAN_NO_EXT", raising=False)
    monkeypatch.setenv("STYLEGAN_CUDA", "0")
    (ext,), cmd = setup_ext.get_ext_modules_and_cmdclass()
    assert ext.name == "stylegan_core._C"
    assert not any(s.endswith(".cu") for s in ext.sources)
    assert all((REPO / s).is_file() for s in ext.sources)
    # one file per op, found by name (an added op needs no change to setup_ext.py)
    names = {Path(s).name for s in ext.sources}
    assert {"common.cpp", "bias_act.cpp", "upfirdn2d.cpp", "filtered_lrelu.cpp"} <= names
    assert "build_ext" in cmd


def test_forced_cuda(monkeypatch):
    monkeypatch.delenv("STYLEGAN_NO_EXT", raising=False)
    monkeypatch.setenv("STYLEGAN_CUDA", "1")
    for var in ("CUDA_HOME", "TORCH_CUDA_ARCH_LIST"):  # set first so that teardown restores the original state
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    if torch.version.cuda is None or setup_ext._find_cuda_home() is None:
        with pytest.raises(RuntimeError, match="STYLEGAN_CUDA=1 but"):
            setup_ext.get_ext_modules_and_cmdclass()
        return
    (ext,), _ = setup_ext.get_ext_modules_and_cmdclass()
    assert {Path(s).name for s in ext.sources if s.endswith(".cu")} >= {"bias_act.cu", "upfirdn2d.cu",
                                                                         "filtered_lrelu.cu"}
    # the three pitfalls of a GPU-less build host: arch list, CUDA_HOME with headers, cusparse.h
    assert os.environ["TORCH_CUDA_ARCH_LIST"]
    assert (Path(os.environ["CUDA_HOME"]) / "include" / "cuda_runtime.h").is_file()
    assert any((Path(d) / "cusparse.h").is_file() for d in ext.include_dirs)


@pytest.mark.skipif(os.environ.get("STYLEGAN_CI") != "1", reason="checks the CI install (.ci/run sets STYLEGAN_CI=1)")
def test_ci_compiles_the_cuda_kernels():
    """In CI (torch is a CUDA build and nvcc is installed) the CUDA kernels must have been compiled in."""
    from stylegan_core.ops import _compiled

    assert _compiled.available(), _compiled.load_error()
    if torch.version.cuda is not None and setup_ext._find_cuda_home() is not None:
        assert _compiled.built_with_cuda()


def test_failed_compile_names_the_way_out(tmp_path):
    """A compile error ends the build with a message naming STYLEGAN_NO_EXT=1 (real compiler, broken source)."""
    for name in ("setup.py", "setup_ext.py", "README.md"):
        shutil.copy(REPO / name, tmp_path / name)
    shutil.copytree(REPO / "stylegan_core" / "csrc", tmp_path / "stylegan_core" / "csrc")
    (tmp_path / "plugins").mkdir()
    src = tmp_path / setup_ext.cpu_sources()[0]  # the first file compiled: the build stops there
    src.write_text("#error deliberately broken for this test\n" + src.read_text())
    env = dict(os.environ, STYLEGAN_CUDA="0", MAX_JOBS="1")
    env.pop("STYLEGAN_NO_EXT", None)
    r = subprocess.run([sys.executable, "setup.py", "build_ext", "--inplace"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=600)
    out = r.stdout + r.stderr
    assert r.returncode != 0
    assert "deliberately broken" in out
    assert "STYLEGAN_NO_EXT=1" in out and "failed" in out


def test_without_extension_auto_warns_once_and_uses_ref(monkeypatch):
    monkeypatch.setattr(_dispatch, "compiled_module", lambda: None)
    monkeypatch.setattr(_dispatch, "_warned", False)
    x = torch.randn(2, 3, 5, 5)
    b = torch.randn(3)
    with pytest.warns(RuntimeWarning, match="compiled ops are not available"):
        y = ops.bias_act(x, b, act="lrelu")
    torch.testing.assert_close(y, ops.bias_act_ref(x, b, act="lrelu"), rtol=0, atol=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ops.bias_act(x, b, act="lrelu")  # no second warning
    with pytest.raises(RuntimeError, match="impl='cpp' was requested"):
        ops.bias_act(x, b, impl="cpp")


def test_env_default_impl(monkeypatch):
    monkeypatch.setenv("STYLEGAN_OPS_IMPL", "ref")
    assert _dispatch.current_default() == "ref"
    assert not _dispatch.use_compiled("auto", "cpu")
    monkeypatch.setenv("STYLEGAN_OPS_IMPL", "fastest")
    with pytest.raises(ValueError, match="STYLEGAN_OPS_IMPL must be one of"):
        _dispatch.use_compiled("auto", "cpu")
