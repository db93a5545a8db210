"""Block synthesis networks: an input part and one registered block per resolution, stacked up to the image.

``core.block_synthesis`` composes a synthesis network from parts of the kinds ``synthesis_input`` and
``synthesis_block`` (:class:`~stylegan_core.interfaces.SynthesisInput`,
:class:`~stylegan_core.interfaces.SynthesisBlock`)::

    synthesis:
      type: core.block_synthesis
      input: {type: stylegan2.const_input}            # optional: without it the first block makes its own
      block: {type: stylegan2.block, architecture: skip}   # every resolution ...
      blocks: {64: {type: stylegan_t.residual_block}}      # ... except those given here

Blocks run at ``start_resolution``, ``2 start_resolution``, ..., ``img_resolution`` with
``min(channel_base // res, channel_max)`` channels (StyleGAN2's schedule) and are the modules ``b<res>``
(NVlabs' names, so a network made of StyleGAN2 blocks has the official module tree); the input part is the
module ``input``. The network passes each block the constructor contract
(:data:`~stylegan_core.interfaces.BLOCK_CONTRACT`: channels, ``w_dim``, resolution, image channels, first/last;
``img_resolution`` and ``use_fp16`` to blocks that name them: the top ``num_fp16_res`` resolutions run in
float16 on CUDA) and the ws as NVlabs' ``SynthesisNetwork`` does (``training/networks_stylegan2.py``): block
``b`` reads ``num_conv + num_torgb`` ws and the next block starts ``num_conv`` further on, so a to-RGB layer
shares its w with the next block's first layer.

The generations' own synthesis parts (``stylegan2.synthesis``, ``stylegan_t.synthesis``,
``stylegan1.synthesis``) are this network with their registered blocks and their official parameters
(subclasses of :class:`BlockSynthesis`), so their parameter names and outputs are unchanged.
"""
from __future__ import annotations

import inspect
import math
from typing import Annotated, Any, Callable, Mapping, Optional

import torch
from pydantic import Field

from .interfaces import BLOCK_OPTIONAL, SynthesisBlock, SynthesisInput, SynthesisNetwork
from .layers import check_noise_mode, compute_dtype, fp16_resolution
from .params import ImgChannels, ImgResolution, WDim
from .spec.models import NestedPart

BlockFactory = Callable[..., SynthesisBlock]
InputFactory = Callable[..., SynthesisInput]


class PartMaker:
    """A block or input factory written in Python: ``PartMaker(cls, "stylegan2.block", **params)(**contract)``
    builds ``cls(**contract, **params)``; ``type`` names the part (shown by the dry run)."""

    def __init__(self, cls: Callable[..., Any], type: str, **params: Any):
        self.cls, self.type, self.params = cls, type, params
        self.accepts = set(inspect.signature(cls).parameters)

    def __call__(self, where: str = "", **contract: Any) -> Any:
        optional = set(BLOCK_OPTIONAL) - self.accepts  # passed only to constructors that name them
        return self.cls(**{k: v for k, v in contract.items() if k not in optional}, **self.params)


def channels_per_resolution(channel_base: int, channel_max: int, resolutions: list[int]) -> dict[int, int]:
    """StyleGAN2's channel schedule: ``min(channel_base // res, channel_max)`` at each resolution."""
    ch = {res: min(int(channel_base) // res, int(channel_max)) for res in resolutions}
    bad = [res for res, c in ch.items() if c < 1]
    if bad:
        raise ValueError(f"channel_base={channel_base} leaves no channels at resolution {max(bad)}; "
                         f"it must be at least {max(bad)}")
    return ch


def _type_name(factory: Any, built: Any) -> str:
    name = getattr(factory, "type", None)
    return str(name) if name else f"{type(built).__module__}.{type(built).__qualname__}"


class BlockSynthesis(SynthesisNetwork):
    """A synthesis network stacked from an input part and registered blocks (see the module docstring).

    ``forward(ws, noise_mode='random', update_emas=False, **kw) -> img``: ws ``[N, num_ws, w_dim]``; ``kw``
    (e.g. ``fused_modconv``, ``force_fp32``, ``lod``) goes to every block.
    """

    def __init__(self,
                 block: Annotated[Any, NestedPart("synthesis_block"), Field(
                     description="the block at every resolution not in blocks, e.g. {type: stylegan2.block, "
                                 "architecture: skip}")],
                 blocks: Annotated[dict[int, Any], NestedPart("synthesis_block", keyed=True), Field(
                     description="blocks at given resolutions, by resolution, e.g. {64: {type: "
                                 "stylegan_t.residual_block}}")] = {},  # noqa: B006 (validated copy per spec)
                 input: Annotated[Optional[Any], NestedPart("synthesis_input"), Field(
                     description="where the first block starts, e.g. {type: stylegan2.const_input} (null: the "
                                 "first block makes its own input, as the official networks do)")] = None,
                 w_dim: WDim = 512, img_resolution: ImgResolution = 256, img_channels: ImgChannels = 3,
                 start_resolution: Annotated[int, Field(ge=2, description="resolution of the first block, where the "
                                                                          "input enters (StyleGAN2: 4, StyleGAN-T: "
                                                                          "8); a power of two")] = 4,
                 channel_base: Annotated[int, Field(ge=1, description="channels at resolution r are "
                                                                      "min(channel_base // r, channel_max) (StyleGAN2's "
                                                                      "cbase, 32768)")] = 32768,
                 channel_max: Annotated[int, Field(ge=1, description="most channels of any resolution (StyleGAN2's "
                                                                     "cmax, 512)")] = 512,
                 num_fp16_res: Annotated[int, Field(ge=0, description="number of the highest resolutions whose blocks "
                                                                      "run in float16 on CUDA (blocks that take "
                                                                      "use_fp16; the CPU always runs "
                                                                      "float32)")] = 0):
        super().__init__()
        r, s = int(img_resolution), int(start_resolution)
        if r < 2 or r & (r - 1) or s < 2 or s & (s - 1) or s > r:
            raise ValueError(f"img_resolution ({img_resolution}) and start_resolution ({start_resolution}) must be "
                             f"powers of two with start_resolution <= img_resolution")
        resolutions = [2 ** i for i in range(int(math.log2(s)), int(math.log2(r)) + 1)]
        self.build_stack(block, dict(blocks or {}), input, w_dim=w_dim, img_resolution=r,
                         img_channels=img_channels, channels=channels_per_resolution(channel_base, channel_max,
                                                                                     resolutions),
                         num_fp16_res=num_fp16_res)

    def build_stack(self, block: BlockFactory, blocks: Mapping[int, BlockFactory], input: Optional[InputFactory],
                    w_dim: int, img_resolution: int, img_channels: int, channels: Mapping[int, int],
                    num_fp16_res: int = 0) -> None:
        """Build the input (``input``, if given) and the blocks ``b<res>`` for the resolutions of ``channels``
        (ascending, the last being ``img_resolution``): ``blocks[res]`` where given, else ``block``.

        A factory is called with the contract's keywords and ``where`` (e.g. ``'at 64 px'``, for its error
        messages): the builder's :class:`~stylegan_core.build.PartFactory` for parts from a spec, a
        :class:`PartMaker` in Python."""
        self.w_dim, self.img_resolution, self.img_channels = int(w_dim), int(img_resolution), int(img_channels)
        self.block_resolutions = sorted(int(res) for res in channels)
        self.channels = {int(res): int(c) for res, c in channels.items()}
        self.num_fp16_res = int(num_fp16_res)
        if not self.block_resolutions or self.block_resolutions[-1] != self.img_resolution:
            raise ValueError(f"the blocks must end at img_resolution={self.img_resolution}, got resolutions "
                             f"{self.block_resolutions}")
        unknown = sorted(set(int(k) for k in blocks) - set(self.block_resolutions))
        if unknown:
            raise ValueError(f"blocks given at {', '.join(map(str, unknown))} px, but the blocks run at "
                             f"{', '.join(map(str, self.block_resolutions))} px")
        blocks = {int(k): v for k, v in blocks.items()}
        start = self.block_resolutions[0]
        self.part_types: dict[str, str] = {}
        if input is not None:
            inp = input(where=f"at {start} px", channels=self.channels[start], resolution=start, w_dim=self.w_dim)
            for name in ("channels", "resolution", "num_ws"):
                if not isinstance(getattr(inp, name, None), int):
                    raise TypeError(f"the input part {_type_name(input, inp)} must declare {name} (an int)")
            if (inp.channels, inp.resolution) != (self.channels[start], start):
                raise ValueError(f"the input part {_type_name(input, inp)} gives {inp.channels} channels at "
                                 f"{inp.resolution} px; the first block takes {self.channels[start]} at {start} px")
            self.input = inp
            self.part_types["input"] = _type_name(input, inp)
        else:
            self.input = None
        fp16_res = fp16_resolution(self.img_resolution, self.num_fp16_res)
        self.num_ws = int(self.input.num_ws) if self.input is not None else 0
        for i, res in enumerate(self.block_resolutions):
            first, last = i == 0, res == self.img_resolution
            in_channels = self.channels[res // 2] if not first else (self.channels[res] if input is not None else 0)
            make = blocks.get(res, block)
            b = make(where=f"at {res} px", in_channels=in_channels, out_channels=self.channels[res], w_dim=self.w_dim,
                     resolution=res, img_channels=self.img_channels, is_first=first, is_last=last,
                     img_resolution=self.img_resolution, use_fp16=res >= fp16_res)
            for name in ("num_conv", "num_torgb"):
                if not isinstance(getattr(b, name, None), int):
                    raise TypeError(f"the block {_type_name(make, b)} at {res} px must declare {name} (an int)")
            self.num_ws += b.num_conv + (b.num_torgb if last else 0)
            self.add_module(f"b{res}", b)
            self.part_types[f"b{res}"] = _type_name(make, b)

    def stack_modules(self) -> list[tuple[str, torch.nn.Module]]:
        """``(name, module)`` of the input part (if any) and the blocks, in the order they run."""
        out = [("input", self.input)] if self.input is not None else []
        return out + [(f"b{res}", getattr(self, f"b{res}")) for res in self.block_resolutions]

    def forward(self, ws: torch.Tensor, noise_mode: str = "random", update_emas: bool = False,
                **kwargs: Any) -> torch.Tensor:
        check_noise_mode(noise_mode)
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"ws must be [N, {self.num_ws}, {self.w_dim}], got {tuple(ws.shape)}")
        ws = ws.to(compute_dtype(ws))
        x = img = None
        w_idx = 0
        if self.input is not None:
            x = self.input(ws.narrow(1, 0, self.input.num_ws))
            w_idx = self.input.num_ws
        for res in self.block_resolutions:
            block = getattr(self, f"b{res}")
            block_ws = ws.narrow(1, w_idx, block.num_conv + block.num_torgb)
            w_idx += block.num_conv  # a block's to-RGB shares its w with the next block's first layer
            x, img = block(x, img, block_ws, noise_mode=noise_mode, update_emas=update_emas, **kwargs)
        if img is None:
            raise RuntimeError(f"the last block (b{self.img_resolution}) returned no image")
        return img

    def extra_repr(self) -> str:
        return (f"w_dim={self.w_dim}, num_ws={self.num_ws}, img_resolution={self.img_resolution}, "
                f"img_channels={self.img_channels}, blocks={self.block_resolutions}")


def register_parts(registry: Any) -> None:
    registry.register("synthesis", "block_synthesis", BlockSynthesis, plugin="core",
                      doc="Synthesis network stacked from an input part and registered blocks: a default block and "
                          "per-resolution overrides (StyleGAN2, StyleGAN-T, StyleGAN blocks, or a plugin's).")


__all__ = ["BlockSynthesis", "PartMaker", "channels_per_resolution", "register_parts"]
