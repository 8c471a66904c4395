"""The CLIP image encoders ViT-B/32 and ViT-L/14@336px as framework-free graphs.

Radford et al., "Learning Transferable Visual Models From Natural Language Supervision", ICML 2021
(arXiv:2103.00020). As feature spaces for generative models: clean-fid's CLIP-FID (Kynkäänniemi et al.,
"The Role of ImageNet Classes in Fréchet Inception Distance", ICLR 2023; ``cleanfid/clip_features.py``,
``model_name="clip_vit_b_32"``) and CMMD (Jayasumana et al., "Rethinking FID: Towards a Better
Evaluation Metric for Image Generation", CVPR 2024; google-research/google-research ``cmmd/``).

The graph is openai/CLIP's ``VisionTransformer`` (``clip/model.py``) in eval mode, as ``model.encode_image``
runs it (open_clip's ``VisionTransformer`` built by ``build_model_from_openai_state_dict`` and
transformers' ``CLIPVisionModelWithProjection`` compute the same):

1. ``conv1``: conv p x p stride p **without bias**, 3 -> width, then the (h/p) x (w/p) patches as tokens in
   row-major order;
2. ``class_embedding`` prepended; ``positional_embedding`` added (the table is the trained grid itself:
   7 x 7 + 1 rows for ViT-B/32 at 224, 24 x 24 + 1 for ViT-L/14 at 336, so no interpolation);
3. ``ln_pre``: a LayerNorm on every token, before the blocks (where DINOv2 has none);
4. ``layers`` pre-norm residual blocks: ``x + attn(ln_1(x))`` then ``x + mlp(ln_2(x))``, LayerNorm eps
   1e-5, ``nn.MultiheadAttention`` with a packed ``in_proj`` (q | k | v, with bias) and ``out_proj``,
   heads of width 64, MLP ``c_fc`` - quick-GELU ``x * sigmoid(1.702 x)`` - ``c_proj`` of width 4 x
   width; no LayerScale;
5. the class token, ``ln_post``, then ``x @ proj`` (width -> embed_dim, no bias): ``encode_image``'s
   output, **the features** of clean-fid's CLIP-FID (512-d for ViT-B/32, not normalised);
6. for CMMD only, the L2 normalisation ``x / ||x||`` (scenic's ``encode_image(normalize=True)`` in the
   authors' JAX code; ``image_embs / torch.linalg.norm(image_embs)`` in the PyTorch port): 768-d.

Node names are OpenAI's ``state_dict`` keys without the ``visual.`` prefix, except four: the bare
parameters ``class_embedding`` (D,) and ``positional_embedding`` (T, D) are ``<key>.value`` of shapes
(1, 1, D) and (1, T, D); ``attn.in_proj_weight`` / ``attn.in_proj_bias`` are ``attn.in_proj.weight`` /
``.bias``; and ``proj`` (D, E) is ``proj.weight``, transposed to (E, D) like every linear weight. The
converters in ``fidkit.backends.torch.convert`` map OpenAI's TorchScript archives and Hugging Face's
``CLIPModel`` / ``CLIPVisionModelWithProjection`` safetensors to these names.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Graph, GraphBuilder

LN_EPS = 1e-5
#: Width of one attention head in every OpenAI CLIP ViT (``heads = width // 64``).
HEAD_WIDTH = 64


@dataclass(frozen=True)
class CLIPConfig:
    """One CLIP image tower: width, depth, heads, patch, input size, projection width, normalisation."""

    name: str
    width: int
    layers: int
    heads: int
    patch: int
    image_size: int
    embed_dim: int
    #: L2-normalise the projected embedding (CMMD), or return ``encode_image`` as is (CLIP-FID)
    normalize: bool = False
    mlp_ratio: int = 4

    @property
    def grid(self) -> int:
        """Returns the patches per side at ``image_size``: the trained position table's grid."""
        return self.image_size // self.patch


def clip_graph(cfg: CLIPConfig) -> Graph:
    """Returns the graph of a CLIP image encoder: output 'features' (N, embed_dim), the projected class token
    (L2-normalised when ``cfg.normalize``)."""
    if cfg.image_size % cfg.patch:
        raise ValueError(f"{cfg.name}: image size {cfg.image_size} is not a multiple of the patch {cfg.patch}")
    b = GraphBuilder(cfg.name, channels=3)
    d, g = cfg.width, cfg.grid
    x = b.conv2d("conv1", "input", 3, d, (cfg.patch, cfg.patch), (cfg.patch, cfg.patch), bias=False)
    x = b.tokens("tokens", x)
    x = b.insert_tokens("class_embedding", x, at=0, count=1, dim=d)
    x = b.pos_embed("positional_embedding", x, d, (g, g), (g, g), prefix=1)
    x = b.layernorm("ln_pre", x, d, LN_EPS)
    for i in range(cfg.layers):
        p = f"transformer.resblocks.{i}"
        y = b.layernorm(f"{p}.ln_1", x, d, LN_EPS)
        y = b.linear(f"{p}.attn.in_proj", y, d, 3 * d)
        y = b.attention(f"{p}.attn.heads", y, d, cfg.heads)
        y = b.linear(f"{p}.attn.out_proj", y, d, d)
        x = b.add(f"{p}.add1", x, y)
        y = b.layernorm(f"{p}.ln_2", x, d, LN_EPS)
        y = b.linear(f"{p}.mlp.c_fc", y, d, cfg.mlp_ratio * d)
        y = b.quick_gelu(f"{p}.mlp.gelu", y)
        y = b.linear(f"{p}.mlp.c_proj", y, cfg.mlp_ratio * d, d)
        x = b.add(f"{p}.add2", x, y)
    x = b.select_token("cls", x, 0)
    x = b.layernorm("ln_post", x, d, LN_EPS)
    x = b.linear("proj", x, d, cfg.embed_dim, bias=False)
    if cfg.normalize:
        x = b.l2_normalize("l2_normalize", x)
    return b.build(features=x)


#: The released image towers (openai/CLIP ``_MODELS``: "ViT-B/32", "ViT-L/14@336px").
CONFIGS = {c.name: c for c in (
    CLIPConfig("clip-vitb32", 768, 12, 12, 32, 224, 512),
    CLIPConfig("clip-vitl14-336", 1024, 24, 16, 14, 336, 768, normalize=True),
)}


def clip_vitb32() -> Graph:
    """Returns CLIP ViT-B/32's image encoder at 224 x 224: ``encode_image``, 512-d, not normalised
    (clean-fid's CLIP-FID features)."""
    return clip_graph(CONFIGS["clip-vitb32"])


def clip_vitl14_336() -> Graph:
    """Returns CLIP ViT-L/14@336px's image encoder at 336 x 336: the 768-d image embedding, L2-normalised
    (CMMD's embedding)."""
    return clip_graph(CONFIGS["clip-vitl14-336"])
