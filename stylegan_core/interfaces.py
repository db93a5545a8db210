"""Abstract parts, their shape contracts, and the optional capabilities core calls on them.

Every part a plugin registers is built by a factory (usually the class itself) and
must be an instance of its kind's base class (:data:`PART_INTERFACES`; ``build_model``
refuses one that is not, naming the part, its type and its plugin). The contracts are
deliberately small: the builder wires the connecting dimensions (``z_dim``, ``c_dim``,
``w_dim``, ``num_ws``, ``img_resolution``, ``img_channels``) by keyword, and core only
ever calls the methods declared here.

All tensors are NCHW float; images are in [-1, 1]; ``N`` is the batch.

Optional capabilities are declared once, here, in one of two ways:

- methods of a kind's base class with a default that does nothing (:meth:`Loss.input_blur_sigma`,
  :meth:`Loss.state_dict`, :meth:`Regularizer.transform_ws`, :attr:`Regularizer.target`,
  :meth:`Metric.describe`, :meth:`Augment.update`, :meth:`Augment.probability`, :meth:`Dataset.get_label`):
  a part overrides what it has;
- :func:`typing.runtime_checkable` protocols for what any module or submodule of a network may have
  (:class:`ProgressAware`, :class:`LabelFitting`, :class:`PhasedFreezing`, :class:`RealsTransform`), or a
  network of one kind
  only (:class:`TextConditioned` and :class:`TextEncoder`, :class:`CentroidTruncation`,
  :class:`GrowingSynthesis`, :class:`OutputTransform`): a part has the capability by defining its
  members (it may also list the protocol among its bases, for documentation); core tests
  ``isinstance(part, Protocol)`` and calls the members directly.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Protocol, Sequence, Union, runtime_checkable

import torch
from torch import nn

#: Names the builder passes by keyword to every factory that accepts them, and
#: that every built part exposes as attributes.
WIRED_NAMES = ("z_dim", "c_dim", "w_dim", "num_ws", "img_resolution", "img_channels")

#: The kinds of parts the registry knows.
KINDS = (
    "mapping",
    "synthesis",
    "synthesis_block",
    "synthesis_input",
    "discriminator",
    "feature_network",
    "conditioning",
    "loss",
    "regularizer",
    "augment",
    "dataset",
    "metric",
    "logger",
)


class MappingNetwork(nn.Module, abc.ABC):
    """``forward(z, c, truncation_psi=1, truncation_cutoff=None, update_emas=False) -> ws``.

    z ``[N, z_dim]``, c ``[N, c_dim]``; returns ws ``[N, num_ws, w_dim]``.
    Keeps a ``w_avg`` buffer for truncation.
    """

    z_dim: int
    c_dim: int
    w_dim: int
    num_ws: int

    @abc.abstractmethod
    def forward(self, z: torch.Tensor, c: torch.Tensor, truncation_psi: float = 1,
                truncation_cutoff: Optional[int] = None, update_emas: bool = False) -> torch.Tensor:
        ...


class SynthesisNetwork(nn.Module, abc.ABC):
    """``forward(ws, noise_mode='const'|'random'|'none', **kw) -> img`` ``[N, img_channels, R, R]``.

    Takes any other keyword (``**kw``): the generator passes ``update_emas`` (True in the training loop's
    main phases, where running statistics may update) and callers may pass options of their own.
    """

    w_dim: int
    num_ws: int
    img_resolution: int
    img_channels: int

    @abc.abstractmethod
    def forward(self, ws: torch.Tensor, noise_mode: str = "const", **kwargs: Any) -> torch.Tensor:
        ...


#: Constructor keywords a synthesis network passes to every block it builds (the block's contract; not spec
#: parameters): ``in_channels`` (0 for a first block that makes its own input, else the channels of the ``x`` it
#: receives), ``out_channels``, ``w_dim``, ``resolution`` (of its output), ``img_channels``, ``is_first``, ``is_last``.
BLOCK_CONTRACT = ("in_channels", "out_channels", "w_dim", "resolution", "img_channels", "is_first", "is_last")
#: Further keywords a synthesis network passes to a block whose constructor names them: ``img_resolution`` (of the
#: network's output) and ``use_fp16`` (the block is among the ``num_fp16_res`` highest resolutions).
BLOCK_OPTIONAL = ("img_resolution", "use_fp16")
#: Constructor keywords a synthesis network passes to its input part: ``channels``, ``resolution`` (of the first
#: block, where the input enters), ``w_dim``.
INPUT_CONTRACT = ("channels", "resolution", "w_dim")


class SynthesisBlock(nn.Module, abc.ABC):
    """One resolution of a synthesis network (kind ``synthesis_block``), stacked by a block synthesis network
    (``core.block_synthesis``, see :mod:`stylegan_core.synthesis`) from its input up to the image.

    Constructor: the :data:`BLOCK_CONTRACT` keywords (and those of :data:`BLOCK_OPTIONAL` it names), passed by the
    network, plus the block's own parameters from the spec. A block takes ``x`` ``[N, in_channels, resolution / 2,
    resolution / 2]`` from the previous block; the first block (``is_first``) takes the input part's ``x``
    ``[N, in_channels, resolution, resolution]`` or, with ``in_channels == 0`` (no input part), makes its own input
    (StyleGAN2: the learned constant ``const``; StyleGAN-T: the Fourier features ``input``, the official names).

    ws accounting (NVlabs ``training/networks_stylegan2.py``): the block reads ``num_conv + num_torgb`` ws; the
    network advances by ``num_conv``, so the block's last ``num_torgb`` ws (its to-RGB layer's) are the next block's
    first ones, and the network's ``num_ws`` is the sum of ``num_conv`` plus the last block's ``num_torgb``.

    ``forward(x, img, ws, **kw) -> (x, img)``: ``img`` is the running image at ``resolution / 2`` (None before the
    first to-RGB), returned at ``resolution``; ``ws`` ``[N, num_conv + num_torgb, w_dim]``; ``kw`` holds the
    synthesis network's call options (``noise_mode``, ``update_emas``, ``force_fp32``, ``fused_modconv``, ...): a
    block takes what it knows and ignores the rest (``**kwargs``).
    """

    in_channels: int
    out_channels: int
    resolution: int
    num_conv: int
    num_torgb: int

    @abc.abstractmethod
    def forward(self, x: Optional[torch.Tensor], img: Optional[torch.Tensor], ws: torch.Tensor,
                **kwargs: Any) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
        ...


class SynthesisInput(nn.Module, abc.ABC):
    """Where a block synthesis network starts (kind ``synthesis_input``): a learned constant, Fourier features, ...

    Constructor: the :data:`INPUT_CONTRACT` keywords (``channels``, ``resolution``, ``w_dim``) plus its own
    parameters. ``forward(ws) -> x`` ``[N, channels, resolution, resolution]`` with ``ws`` ``[N, num_ws, w_dim]``
    (the network's first ``num_ws`` ws; ``num_ws`` may be 0, then ``ws`` only gives the batch size).
    """

    channels: int
    resolution: int
    num_ws: int

    @abc.abstractmethod
    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        ...


class Discriminator(nn.Module, abc.ABC):
    """``forward(img, c) -> logits`` of shape ``[N]`` or ``[N, heads]``."""

    c_dim: int
    img_resolution: int
    img_channels: int

    @abc.abstractmethod
    def forward(self, img: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        ...


class FeatureNetwork(nn.Module, abc.ABC):
    """Frozen network: ``forward(img) -> list[Tensor]`` of tapped layers.

    Declares ``channels`` and ``strides`` of each tapped layer, the expected
    ``input_size`` and the normalisation ``mean``/``std`` it applies to images in
    [-1, 1]. It stays in eval mode whatever the mode of its owner; its parameters
    have ``requires_grad=False`` and are kept out of optimizers, ``model.safetensors``
    and snapshots (rebuilt from the spec's weights file, see :mod:`stylegan_core.features`).
    """

    channels: list[int]
    strides: list[int]
    input_size: int
    mean: tuple[float, ...]  # per RGB channel, applied to images mapped to [0, 1]
    std: tuple[float, ...]

    def train(self, mode: bool = True) -> "FeatureNetwork":  # frozen: always eval
        return super().train(False)


class Conditioning(nn.Module):
    """A conditioning part (kind ``conditioning``), nested in a mapping network or discriminator:
    ``forward(c) -> [N, c_dim]`` embeddings of the labels ``c`` (e.g. a list of captions, see
    :class:`TextEncoder`). Declares ``c_dim``, the embedding width."""

    c_dim: int


@dataclass
class StepContext:
    """What a loss or regularizer may use during one phase of one training step.

    ``run_G(z, c)`` returns ``(img, ws)`` (style mixing and the augmentation of the
    spec already applied where they belong); ``run_D(img, c)`` returns logits,
    applying the augmentation pipeline first.

    In phase ``'D'`` the loss sets ``real_logits`` to D's (detached) logits on the real
    images; the loop hands those of the D main phase to :meth:`Augment.update`.
    """

    real_img: torch.Tensor
    real_c: Any  # [N, c_dim] tensor, or list[str] of captions (label_type "text")
    gen_z: torch.Tensor
    gen_c: Any
    run_G: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    run_D: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    G: nn.Module
    D: nn.Module
    cur_nimg: int = 0
    stats: dict[str, float] = field(default_factory=dict)
    real_logits: Optional[torch.Tensor] = None


class Loss(abc.ABC):
    """The adversarial loss. ``accumulate(phase, ctx)`` for phase ``'G'`` or ``'D'``
    returns named scalar terms; the loop sums them and calls ``backward``."""

    @abc.abstractmethod
    def accumulate(self, phase: str, ctx: StepContext) -> dict[str, torch.Tensor]:
        ...

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Running state to keep in snapshots (e.g. a path-length mean); restored on resume."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass

    def input_blur_sigma(self, cur_nimg: int) -> float:
        """Sigma (pixels) of the Gaussian blur the loop applies to every image D sees, before the
        augmentation, at ``cur_nimg`` (see :mod:`stylegan_core.training.blur`); 0: none."""
        return 0.0


class Regularizer(abc.ABC):
    """A penalty applied to ``target`` ('G' or 'D') every ``interval`` steps (lazy
    regularization: the loop multiplies the penalty by ``interval`` and, as in the
    official code, scales that network's learning rate and betas by
    ``interval / (interval + 1)``).

    A regularizer may also transform the ws the generator is run with during
    training (style mixing does): override :meth:`transform_ws`.
    """

    target: str = "D"
    interval: int = 1

    def penalty(self, ctx: StepContext) -> dict[str, torch.Tensor]:
        return {}

    def transform_ws(self, G: nn.Module, ws: torch.Tensor, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        return ws

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Tensors to keep in snapshots (e.g. the path-length mean)."""
        return {}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        pass


class Augment(nn.Module):
    """Differentiable augmentation: ``forward(img) -> img``. Adaptive pipelines set
    ``adaptive`` and implement :meth:`update` from the sign of real logits."""

    #: whether :meth:`update` adapts the strength from D's logits on reals (the loss must then set
    #: ``StepContext.real_logits`` in phase ``'D'``; the loop refuses a loss that does not)
    adaptive: bool = False

    def update(self, real_logits: torch.Tensor, batch_size: int) -> None:
        """Called by the loop after every training step with the real logits of the D main phase
        (``StepContext.real_logits``, detached) and the batch size."""

    def probability(self) -> Optional[float]:
        """The current augmentation probability ``p`` (logged as ``augment/p`` at every tick), or None
        for a pipeline without one."""
        return None


class Dataset(abc.ABC):
    """Images as uint8 ``[C, H, W]`` with a label vector ``[c_dim]`` (float32, may be empty).

    Subclasses are map-style: ``__len__`` and ``__getitem__(i) -> (image, label)``,
    and declare ``resolution``, ``num_channels`` and ``label_dim``.

    Captioned datasets set ``label_type = "text"``: the label of an image is its caption (``str``),
    ``label_dim`` is 0, and batches of labels are ``list[str]`` (:mod:`stylegan_core.data.labels`);
    a text-conditioned mapping network and discriminator receive the captions as ``c``.
    """

    resolution: int
    num_channels: int
    label_dim: int
    label_type: str = "vector"  # or "text"
    name: str = "dataset"

    @abc.abstractmethod
    def __len__(self) -> int:
        ...

    @abc.abstractmethod
    def __getitem__(self, idx: int) -> tuple[torch.Tensor, torch.Tensor]:
        ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(len(self)):
            yield self[i]

    def get_label(self, idx: int) -> Any:
        """The label of item ``idx`` (a vector or a caption); datasets that can read it without decoding the
        image override this."""
        return self[idx][1]

    def fingerprint(self) -> str:
        """A stable hash of the content, used to cache real-data statistics."""
        raise NotImplementedError


class Metric(abc.ABC):
    """``compute(generator, dataset, ...) -> dict[str, float]``; appended as JSON lines."""

    name: str = "metric"

    @abc.abstractmethod
    def compute(self, generator: nn.Module, dataset: Dataset, **kwargs: Any) -> dict[str, float]:
        ...

    def describe(self) -> dict[str, Any]:
        """Fields added to every JSON-lines record of this metric (e.g. the detector's name and weights hash)."""
        return {}


@dataclass
class LogRun:
    """What a :class:`Logger` is told when a training session starts.

    ``start_nimg``: images shown when this session starts (0, or the resumed snapshot's count); ``resumed``:
    whether it continues a snapshot (records a logger wrote for ticks after ``start_nimg`` belong to a session
    that was killed before its next snapshot: those ticks are trained again); ``spec_text``: the resolved spec
    as YAML (the build's lock file); ``hparams``: the training settings and part types, flat
    (``train.batch_size``, ``generator.synthesis.type``, ...), values str/int/float/bool.
    """

    run_dir: Path
    spec_text: str
    start_nimg: int
    resumed: bool
    hparams: dict[str, Any] = field(default_factory=dict)


class Logger(abc.ABC):
    """Receives the training's records (kind ``logger``, listed in the spec's ``train.loggers``), on the main
    process only: ``start(run)`` once before the first step, ``log_tick(record, metrics)`` at the end of every tick,
    ``log_image(name, path, nimg)`` for each sample grid written (``fakes``, and ``reals`` once), ``close(done)``
    when the session ends (``done``: training reached its length).

    ``record`` is the tick's record as ``stats.jsonl`` holds it: ``tick``, ``kimg``, ``sec_per_tick``,
    ``img_per_sec``, the tick's mean of every per-step statistic (``loss/G``, ``reg/r1``, ...), ``augment/p``
    when there is one, ``ops``; ``metrics`` the metrics computed at this tick (often none).
    """

    def start(self, run: LogRun) -> None:
        """Open the logger's output; an error here stops training before its first step."""

    @abc.abstractmethod
    def log_tick(self, record: dict[str, Any], metrics: dict[str, float]) -> None:
        ...

    def log_image(self, name: str, path: Path, nimg: int) -> None:
        """A sample grid just written to ``path`` (PNG) at ``nimg`` images shown."""

    def close(self, done: bool) -> None:
        """Flush and close."""


# ---------------------------------------------------------------------------------------------------------
# Capabilities of network parts: runtime-checkable protocols (see the module docstring).


@runtime_checkable
class ProgressAware(Protocol):
    """A module that changes with training progress (StyleGAN's progressive growing sets its level of detail).

    The training loop calls ``set_training_progress(cur_nimg)`` on every module and submodule of G, G_ema and D
    that has it, before each training step, right after a resume and before writing grids, metrics and
    snapshots. The state derives from ``cur_nimg`` alone, deterministically, so a resumed run is in the same
    state as an uninterrupted one; state that ``forward`` reads belongs in a buffer, so that snapshots and
    ``generate`` keep it.
    """

    def set_training_progress(self, cur_nimg: int) -> None: ...


@runtime_checkable
class LabelFitting(Protocol):
    """A module with data-dependent state fitted to the dataset's labels (StyleGAN-T's caption standardisation).

    A fresh training run calls ``fit_labels(labels)`` once, on every module and submodule of G and D that has
    it, with all the dataset's labels (``[N, c_dim]`` or a list of captions), before G_ema is copied from G;
    the state is kept in buffers. Returns True when it fitted something now; a no-op returning False when the
    state was already fitted (a loaded model, a later training phase).
    """

    def fit_labels(self, labels: Any) -> bool: ...


@runtime_checkable
class PhasedFreezing(Protocol):
    """A module with parameters that do not train in some training phases (the spec's ``train.phase``).

    ``frozen_parameters(phase)`` names them as in the module's own ``named_parameters()``. The loop keeps them
    out of the optimizer and at ``requires_grad=False``; they are saved as usual. A module that gives meaning
    to phases other than ``all`` lists them in a class attribute ``phases`` (a tuple; the loop refuses a
    phase no part knows). See :mod:`stylegan_core.freezing`.
    """

    def frozen_parameters(self, phase: str = "all") -> list[str]: ...


@runtime_checkable
class TextConditioned(Protocol):
    """A generator or mapping network that says whether its ``c`` is a list of captions.

    ``text_conditioned = True``: ``generate``/``interpolate``/``project`` take a prompt (``--text``) and
    refuse a class; ``False``: it is not, whatever it holds. A generator whose modules declare nothing is
    text-conditioned when its mapping network holds a :class:`TextEncoder`.
    """

    text_conditioned: bool


@runtime_checkable
class TextEncoder(Protocol):
    """A conditioning part that embeds captions: ``forward(texts: list[str]) -> [N, c_dim]``, with the
    model's own tokenizer ``tokenize(texts) -> token ids``."""

    c_dim: int

    def tokenize(self, texts: Sequence[str]) -> torch.Tensor: ...


@runtime_checkable
class CentroidTruncation(Protocol):
    """A mapping network with multimodal truncation: ws move toward the nearest of several centroids in W (of
    the sample's class) instead of toward the one mean ``w_avg``.

    ``load_centroids(source)`` takes a tensor or a safetensors file of centroids; ``truncate_to_centroids(ws,
    psi, c, truncation_cutoff)`` lerps the first ``truncation_cutoff`` ws (all when None) of each sample from
    its nearest centroid by ``psi``. ``generate --centroids FILE`` uses it.
    """

    def load_centroids(self, centroids: Union[str, Path, torch.Tensor]) -> None: ...

    def truncate_to_centroids(self, ws: torch.Tensor, psi: float, c: Optional[torch.Tensor] = None,
                              truncation_cutoff: Optional[int] = None) -> torch.Tensor: ...


@runtime_checkable
class OutputTransform(Protocol):
    """A synthesis input with a user transform of the output: ``transform`` ``[3, 3]``, the inverse of the affine
    map (rotation, then translation, in image units) applied to the generated image; identity by default. The
    StyleGAN3 input layer has it (NVlabs stylegan3 ``training/networks_stylegan3.py``, ``SynthesisInput``;
    ``gen_images.py --translate/--rotate`` and the visualizer's equivariance view set it);
    ``stylegan-run DIR serve`` sets it for the translation and rotation sliders."""

    transform: torch.Tensor


@runtime_checkable
class RealsTransform(Protocol):
    """A module that changes the real images D is shown with training progress (StyleGAN's progressive growing:
    during a fade-in the reals are cross-faded between two levels of detail as the fakes are, NVlabs/stylegan
    ``training/training_loop.py`` ``process_reals``).

    The training loop calls ``process_reals(img)`` on every module and submodule of D and G that has it, in that
    order, on each batch of real images (``[N, C, H, W]`` in [-1, 1], after the dataset and before any blur or
    augmentation) and shows D the result; the state it depends on comes from
    :meth:`ProgressAware.set_training_progress`.
    """

    def process_reals(self, img: torch.Tensor) -> torch.Tensor: ...


@runtime_checkable
class GrowingSynthesis(Protocol):
    """A synthesis network that grows by stages (``stylegan-run DIR grow``, :mod:`stylegan_core.training.grow`).

    ``stage``: its stage index; ``head_layer_names``: the layers this stage adds (they start afresh when
    grown into); ``grow_overrides()``: ``{dotted spec path: value}``, the changes that make the next stage's
    spec, or ``ValueError`` when there is no next stage.
    """

    stage: int
    head_layer_names: list[str]

    def grow_overrides(self) -> dict[str, Any]: ...


#: Kinds whose parts a network builds itself, once per position, passing these constructor keywords (the spec gives
#: the parts' own parameters only; the builder hands the network a factory, see :mod:`stylegan_core.synthesis`).
CONTRACT_NAMES: dict[str, tuple[str, ...]] = {"synthesis_block": BLOCK_CONTRACT + BLOCK_OPTIONAL,
                                              "synthesis_input": INPUT_CONTRACT}

#: The base class every built part of a kind must be an instance of (checked by ``build_model``).
PART_INTERFACES: dict[str, type] = {
    "mapping": MappingNetwork,
    "synthesis": SynthesisNetwork,
    "synthesis_block": SynthesisBlock,
    "synthesis_input": SynthesisInput,
    "discriminator": Discriminator,
    "feature_network": FeatureNetwork,
    "conditioning": Conditioning,
    "loss": Loss,
    "regularizer": Regularizer,
    "augment": Augment,
    "dataset": Dataset,
    "metric": Metric,
    "logger": Logger,
}
