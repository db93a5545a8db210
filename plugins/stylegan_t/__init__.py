"""Built-in plugin ``stylegan_t``: StyleGAN-T (text-to-image).

Registered through the entry point ``stylegan_t = stylegan_plugins.stylegan_t`` in the group
``stylegan_core.plugins``, exactly as a third-party plugin is. Builds on the ``stylegan2`` (layers,
channel schedule) and ``stylegan3`` (Fourier-feature input) plugins.

Generator parts (:mod:`.networks`, :mod:`.text`):

* ``stylegan_t.clip_text`` (conditioning): an open_clip text tower (default ``ViT-L-14-quickgelu``),
  ``weights: random | <local file>``, its own tokenizer; L2-normalised caption embeddings; frozen
  except in the ``text_encoder`` phase, with a caption cache while frozen.
* ``stylegan_t.mapping``: z through a 2-layer MLP, the caption embedding of a nested ``conditioning``
  part concatenated after it (w_dim = z_dim + c_dim); truncation of the z part only.
* ``stylegan_t.synthesis``: skip generator from 8x8 with a Fourier-feature input, residual blocks
  with GroupNorm and LayerScale, second-order styles; presets ``lite`` and ``full``.

Training phases (spec ``train.phase``): ``all``, ``text_encoder``, ``freeze64`` (each part's
``frozen_parameters(phase)``).
"""
from stylegan_core.api import hookimpl

from .networks import FourierInput, MappingNetwork, SynthesisBlock, SynthesisNetwork
from .text import ClipTextEncoder

STYLEGAN_CORE_API = 1
#: plugins this one builds on (loaded first): modulated convs, the Fourier input, DiffAugment in its specs
STYLEGAN_PLUGIN_REQUIRES = ["stylegan2", "stylegan3", "projected_gan"]


@hookimpl
def register(registry):
    # generator side
    registry.register("conditioning", "clip_text", ClipTextEncoder,
                      doc="open_clip text tower (default ViT-L-14-quickgelu; weights random or a local file, only "
                          "the text tower kept) with its own tokenizer: L2-normalised caption embeddings [N, c_dim]; "
                          "small-tower overrides width/layers/heads/context_length/embed_dim; frozen except in the "
                          "text_encoder phase, caption cache while frozen; standardize: embeddings centred and "
                          "scaled over the training captions (not official; for random towers); attention through "
                          "stylegan_core.layers.attention.")
    registry.register("mapping", "mapping", MappingNetwork,
                      doc="StyleGAN-T mapping: normalised z through an MLP (2 layers, lr x0.01); the caption "
                          "embedding of the nested conditioning part bypasses it: w = [mlp(z), emb], w_dim = z_dim + "
                          "c_dim; x_avg EMA 0.995 of the z part; truncation moves only the z part.")
    registry.register("synthesis", "synthesis", SynthesisNetwork,
                      doc="StyleGAN-T synthesis: skip generator from 8x8 with StyleGAN3's Fourier-feature input, "
                          "blocks of conv0 (up 2) + num_res_blocks x [modconv, residual modconv with GroupNorm and "
                          "LayerScale 1e-5], second-order styles s = m1*m2 + m3; presets lite / full / custom "
                          "(core.block_synthesis of stylegan_t.residual_block with the official arguments and names).")
    registry.register("synthesis_block", "residual_block", SynthesisBlock,
                      doc="StyleGAN-T synthesis block: conv0 (up 2), num_res_blocks x [modconv, residual modconv with "
                          "GroupNorm and LayerScale], second-order styles, to-RGB; as the first block without an input "
                          "part, its own Fourier input.")
    registry.register("synthesis_input", "fourier_input", FourierInput,
                      doc="StyleGAN3's Fourier features as a synthesis input (StyleGAN-T: bandwidth 2, sampled at the "
                          "resolution), rotated/translated per sample by an affine of the first w.")
    # discriminator, loss and metric
    from .discriminator import StyleGANTDiscriminator
    from .loss import TextHinge
    from .metrics import CLIPScore

    registry.register("discriminator", "discriminator", StyleGANTDiscriminator,
                      doc="StyleGAN-T discriminator: a frozen ViT (official DINO ViT-S/16 via core.timm, taps "
                          "[2, 5, 8, 11, patch_embed], readout add), one head per tapped token map (SpectralConv1d, "
                          "BatchNormLocal virtual batch 8, LReLU, circular k=9 residual block), projection on the "
                          "caption embedding of its own frozen conditioning part (or the class vector); random "
                          "crops (p 0.5) of images larger than the ViT input; logits [N, sum of tokens].")
    registry.register("loss", "hinge", TextHinge,
                      doc="StyleGAN-T loss: hinge; blur of D's inputs (official 32 px over 1000 kimg); CLIP guidance "
                          "(clip_weight, default 0): arccos(cos)^2 between the CLIP embedding of 64 px crops of the "
                          "generated images (nested clip feature network, taps [embedding]) and the generator's own "
                          "caption embedding (G.mapping.conditioning, no grad).")
    registry.register("metric", "clip_score", CLIPScore,
                      doc="CLIP score (official cs10k): 100 * mean cosine between the open_clip image embedding of "
                          "generated images and the text embedding of their captions drawn from the dataset "
                          "(official model ViT-g-14, laion2b_s12b_b42k weights from a local file).")


__all__ = ["ClipTextEncoder", "FourierInput", "MappingNetwork", "SynthesisBlock", "SynthesisNetwork", "register",
           "STYLEGAN_CORE_API"]
