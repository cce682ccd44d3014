"""A small flax nnx transformer text classifier, for `from_nnx`."""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

POOLINGS = ("mean", "first")


def _dropout(rate, rngs):
    """nnx.Dropout; without a random stream at rate 0 (a deterministic model)."""
    return nnx.Dropout(rate, rngs=rngs) if rate > 0 else nnx.Dropout(0.0)


class _Block(nnx.Module):
    """Pre-LayerNorm block: x + drop(attn(LN(x))), then x + drop(MLP(LN(x)))."""

    def __init__(self, dim, heads, mlp_dim, dropout, *, rngs, dtype):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs, param_dtype=dtype)
        self.attn = nnx.MultiHeadAttention(
            heads,
            dim,
            dropout_rate=dropout,
            deterministic=dropout == 0,
            keep_rngs=dropout > 0,
            decode=False,
            param_dtype=dtype,
            rngs=rngs,
        )
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs, param_dtype=dtype)
        self.up = nnx.Linear(dim, mlp_dim, rngs=rngs, param_dtype=dtype)
        self.down = nnx.Linear(mlp_dim, dim, rngs=rngs, param_dtype=dtype)
        self.drop = _dropout(dropout, rngs)

    def __call__(self, x, mask):
        x = x + self.drop(self.attn(self.norm1(x), mask=mask))
        return x + self.drop(self.down(jax.nn.gelu(self.up(self.norm2(x)))))


class TextTransformer(nnx.Module):
    """A transformer encoder that classifies token sequences.

    Token and learned position embeddings, `num_layers` pre-LayerNorm blocks
    (multi-head self-attention that ignores padding tokens, a GELU MLP, dropout
    after each and on the embeddings), a final LayerNorm, pooling over the
    sequence, and a linear head. Input: int tokens `(batch, seq_len)`, with
    `pad_id` marking padding; output: logits `(batch, num_classes)`.

    Args:
      vocab_size: number of token ids (embedding rows).
      max_len: the longest sequence (position embedding rows).
      num_classes: outputs of the head.
      dim: the model width; `heads` must divide it.
      heads: attention heads.
      num_layers: blocks.
      mlp_dim: hidden width of each block's MLP (default 4 x dim).
      dropout: rate of every dropout (embeddings, attention weights, block
        outputs); 0 for a deterministic model.
      pooling: "mean" (the mean over the non-padding positions) or "first"
        (the first position, e.g. a [CLS] token).
      pad_id: the padding token id.
      rngs: `nnx.Rngs(params=..., dropout=...)`.
      dtype: parameter dtype.

    With `accjax.models.from_nnx(model)` each example is one row `(tokens,
    label)`; dropout then draws from the Problem's per-(step, example) key.
    """

    def __init__(
        self,
        *,
        vocab_size: int,
        max_len: int,
        num_classes: int,
        rngs: nnx.Rngs,
        dim: int = 64,
        heads: int = 2,
        num_layers: int = 2,
        mlp_dim: int | None = None,
        dropout: float = 0.1,
        pooling: str = "mean",
        pad_id: int = 0,
        dtype=jnp.float32,
    ):
        if pooling not in POOLINGS:
            raise ValueError(f"`pooling` must be one of {POOLINGS}; got {pooling!r}.")
        if dim % heads:
            raise ValueError(
                f"`heads` must divide `dim`; got dim={dim}, heads={heads}."
            )
        self.pooling, self.pad_id = pooling, pad_id
        self.tokens = nnx.Embed(vocab_size, dim, rngs=rngs, param_dtype=dtype)
        self.positions = nnx.Embed(max_len, dim, rngs=rngs, param_dtype=dtype)
        self.drop = _dropout(dropout, rngs)
        blocks = [
            _Block(dim, heads, mlp_dim or 4 * dim, dropout, rngs=rngs, dtype=dtype)
            for _ in range(num_layers)
        ]
        self.blocks = nnx.List(blocks) if hasattr(nnx, "List") else blocks
        self.norm = nnx.LayerNorm(dim, rngs=rngs, param_dtype=dtype)
        self.head = nnx.Linear(dim, num_classes, rngs=rngs, param_dtype=dtype)

    def __call__(self, tokens):  # (batch, seq_len) int
        valid = tokens != self.pad_id
        positions = jnp.arange(tokens.shape[1])
        x = self.drop(self.tokens(tokens) + self.positions(positions)[None])
        mask = nnx.make_attention_mask(valid, valid)
        for block in self.blocks:
            x = block(x, mask)
        x = self.norm(x)
        if self.pooling == "first":
            pooled = x[:, 0]
        else:
            weights = valid.astype(x.dtype)[..., None]
            pooled = jnp.sum(x * weights, 1) / jnp.maximum(jnp.sum(weights, 1), 1)
        return self.head(pooled)
