"""The DINOv2 backbones (ViT-S/B/L/g, patch 14, with and without registers) as framework-free graphs.

Oquab et al., "DINOv2: Learning Robust Visual Features without Supervision", TMLR 2024 (arXiv:2304.07193);
registers: Darcet et al., "Vision Transformers Need Registers", ICLR 2024 (arXiv:2309.16588). As a
feature space for generative models: Stein et al., "Exposing flaws of generative model evaluation
metrics and their unfair treatment of diffusion models", NeurIPS 2023 (dgm-eval, FD_DINOv2), and
Karras et al., "Analyzing and Improving the Training Dynamics of Diffusion Models", CVPR 2024 (EDM2).

The graph is facebookresearch/dinov2's ``DinoVisionTransformer`` in eval mode as its torch hub entry
points build it (``dinov2/hub/backbones.py``: ``img_size=518``, ``patch_size=14``, ``init_values=1.0``,
``block_chunks=0``), and what ``model(x)`` returns, as dgm-eval and EDM2 call it: the final LayerNorm's
class token (``x_norm_clstoken``; ``head`` is the identity).

1. ``patch_embed.proj``: conv 14x14 stride 14 with bias, 3 -> D, then the (h/14) x (w/14) patches as
   tokens in row-major order;
2. ``cls_token`` prepended; ``pos_embed`` added: its class row as is, its 37 x 37 patch grid (trained at
   518 x 518) resampled to the input's grid as ``interpolate_pos_encoding`` does: torch bicubic with
   ``scale_factor = (g + 0.1) / 37`` for the models without registers (``interpolate_offset=0.1``), with
   ``size = g`` and ``antialias=True`` for the ``_reg`` models (``interpolate_offset=0.0``,
   ``interpolate_antialias=True``); at 224 x 224, g = 16;
3. ``_reg`` models: 4 ``register_tokens`` inserted after the class token (they get no position
   embedding);
4. ``depth`` pre-norm blocks: ``x + ls1(attn(norm1(x)))`` then ``x + ls2(mlp(norm2(x)))``, LayerNorm eps
   1e-6, multi-head attention with a packed ``qkv`` linear and an output ``proj``, LayerScale (``gamma``),
   MLP ``fc1`` - GELU (erf) - ``fc2`` of width 4D, or for ViT-g a SwiGLU ``w12`` - ``w3`` of width
   ``(int(4D * 2 / 3) + 7) // 8 * 8`` (``SwiGLUFFNFused``);
5. ``norm`` then the class token: **the features** (D = 384, 768, 1024, 1536).

Node names are the hub checkpoint's ``state_dict`` keys, except the three bare parameters ``cls_token``,
``pos_embed`` and ``register_tokens``, which are ``<key>.value`` here (the converter in
``fidkit.backends.torch.convert`` renames them and drops the training-only ``mask_token``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Graph, GraphBuilder

PATCH = 14
#: The hub models' ``img_size``: their position tables are 37 x 37 patches.
TRAIN_SIZE = 518
LN_EPS = 1e-6
INPUT_SIZE = (224, 224)


@dataclass(frozen=True)
class ViTConfig:
    """One DINOv2 backbone: width, depth, heads, FFN, registers and position-embedding interpolation."""

    name: str
    dim: int
    depth: int
    heads: int
    ffn: str = "mlp"  # "mlp" (fc1, GELU, fc2) or "swiglu" (w12, SwiGLU, w3)
    registers: int = 0
    patch: int = PATCH
    table_grid: int = TRAIN_SIZE // PATCH
    input_size: tuple[int, int] = INPUT_SIZE
    mlp_ratio: float = 4.0

    @property
    def offset(self) -> float:
        """Returns the hub's position-embedding interpolation offset (0.1 without registers, else 0)."""
        return 0.0 if self.registers else 0.1

    @property
    def antialias(self) -> bool:
        """Returns whether the hub interpolates position embeddings with antialiasing (register models)."""
        return bool(self.registers)

    @property
    def hidden(self) -> int:
        """Returns the feed-forward width (SwiGLU's rounded 2/3 of the MLP width for ViT-g)."""
        h = int(self.dim * self.mlp_ratio)
        return (int(h * 2 / 3) + 7) // 8 * 8 if self.ffn == "swiglu" else h


def vit_graph(cfg: ViTConfig) -> Graph:
    """Returns the graph of a DINOv2 backbone: output 'features' (N, dim), the normed class token."""
    b = GraphBuilder(cfg.name, channels=3)
    h, w = cfg.input_size
    if h % cfg.patch or w % cfg.patch:
        raise ValueError(f"{cfg.name}: input size {cfg.input_size} is not a multiple of the patch {cfg.patch}")
    grid = (h // cfg.patch, w // cfg.patch)
    d = cfg.dim
    x = b.conv2d("patch_embed.proj", "input", 3, d, (cfg.patch, cfg.patch), (cfg.patch, cfg.patch), bias=True)
    x = b.tokens("patch_embed.tokens", x)
    x = b.insert_tokens("cls_token", x, at=0, count=1, dim=d)
    x = b.pos_embed("pos_embed", x, d, grid, (cfg.table_grid, cfg.table_grid), prefix=1, offset=cfg.offset,
                    antialias=cfg.antialias)
    if cfg.registers:
        x = b.insert_tokens("register_tokens", x, at=1, count=cfg.registers, dim=d)
    for i in range(cfg.depth):
        p = f"blocks.{i}"
        y = b.layernorm(f"{p}.norm1", x, d, LN_EPS)
        y = b.linear(f"{p}.attn.qkv", y, d, 3 * d)
        y = b.attention(f"{p}.attn.heads", y, d, cfg.heads)
        y = b.linear(f"{p}.attn.proj", y, d, d)
        y = b.layerscale(f"{p}.ls1", y, d)
        x = b.add(f"{p}.add1", x, y)
        y = b.layernorm(f"{p}.norm2", x, d, LN_EPS)
        if cfg.ffn == "swiglu":
            y = b.linear(f"{p}.mlp.w12", y, d, 2 * cfg.hidden)
            y = b.swiglu(f"{p}.mlp.act", y)
            y = b.linear(f"{p}.mlp.w3", y, cfg.hidden, d)
        else:
            y = b.linear(f"{p}.mlp.fc1", y, d, cfg.hidden)
            y = b.gelu(f"{p}.mlp.act", y)
            y = b.linear(f"{p}.mlp.fc2", y, cfg.hidden, d)
        y = b.layerscale(f"{p}.ls2", y, d)
        x = b.add(f"{p}.add2", x, y)
    x = b.layernorm("norm", x, d, LN_EPS)
    return b.build(features=b.select_token("cls", x, 0))


#: The released backbones (torch hub ``dinov2_vit{s,b,l,g}14`` and ``..._reg``).
CONFIGS = {c.name: c for c in (
    ViTConfig("dinov2-vits14", 384, 12, 6),
    ViTConfig("dinov2-vitb14", 768, 12, 12),
    ViTConfig("dinov2-vitl14", 1024, 24, 16),
    ViTConfig("dinov2-vitg14", 1536, 40, 24, ffn="swiglu"),
    ViTConfig("dinov2-vits14-reg", 384, 12, 6, registers=4),
    ViTConfig("dinov2-vitb14-reg", 768, 12, 12, registers=4),
    ViTConfig("dinov2-vitl14-reg", 1024, 24, 16, registers=4),
    ViTConfig("dinov2-vitg14-reg", 1536, 40, 24, ffn="swiglu", registers=4),
)}


def dinov2_vits14() -> Graph:
    """Returns DINOv2 ViT-S/14 (384-d class token) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vits14"])


def dinov2_vitb14() -> Graph:
    """Returns DINOv2 ViT-B/14 (768-d class token) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vitb14"])


def dinov2_vitl14() -> Graph:
    """Returns DINOv2 ViT-L/14 (1024-d class token) at 224 x 224: the FD_DINOv2 network of dgm-eval and EDM2."""
    return vit_graph(CONFIGS["dinov2-vitl14"])


def dinov2_vitg14() -> Graph:
    """Returns DINOv2 ViT-g/14 (1536-d class token, SwiGLU FFN) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vitg14"])


def dinov2_vits14_reg() -> Graph:
    """Returns DINOv2 ViT-S/14 with 4 registers (384-d class token) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vits14-reg"])


def dinov2_vitb14_reg() -> Graph:
    """Returns DINOv2 ViT-B/14 with 4 registers (768-d class token) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vitb14-reg"])


def dinov2_vitl14_reg() -> Graph:
    """Returns DINOv2 ViT-L/14 with 4 registers (1024-d class token) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vitl14-reg"])


def dinov2_vitg14_reg() -> Graph:
    """Returns DINOv2 ViT-g/14 with 4 registers (1536-d class token, SwiGLU FFN) at 224 x 224."""
    return vit_graph(CONFIGS["dinov2-vitg14-reg"])
