"""Fusion modules: output shapes, masks respected, temporal order seen."""

from __future__ import annotations

import pytest
import torch

from affectgpt.model.fusion import AttentionPool, MeanPool, PreFusion, QFormer, build_pool


@pytest.mark.parametrize("kind", ["qformer", "attention", "mean"])
def test_pools_map_tokens_to_queries(kind):
    torch.manual_seed(0)
    pool = build_pool(kind, dim=16, num_queries=3, num_times=4, layers=2, heads=4)
    assert pool(torch.randn(2, 4, 5, 16)).shape == (2, 3, 16)


@pytest.mark.parametrize("kind", ["qformer", "attention", "mean"])
def test_masked_tokens_do_not_matter(kind):
    torch.manual_seed(0)
    pool = build_pool(kind, dim=16, num_queries=2, num_times=1, layers=1, heads=2)
    x = torch.randn(2, 1, 10, 16)
    mask = torch.ones(2, 1, 10, dtype=torch.bool)
    mask[0, 0, 6:] = False
    y = x.clone()
    y[0, 0, 6:] = 100.0
    torch.testing.assert_close(pool(x, mask), pool(y, mask))
    assert not torch.allclose(pool(x), pool(y))


def test_mean_pool_averages_contiguous_spans():
    x = torch.arange(2 * 3 * 4, dtype=torch.float32).view(1, 2, 3, 4)  # 6 tokens over 2 frames
    out = MeanPool(num_queries=2)(x)
    torch.testing.assert_close(out[0, 0], x[0, 0].mean(0))
    torch.testing.assert_close(out[0, 1], x[0, 1].mean(0))


@pytest.mark.parametrize("cls", [QFormer, AttentionPool])
def test_temporal_embedding_makes_frame_order_visible(cls):
    torch.manual_seed(0)
    pool = cls(16, 2, 3, 1, 2) if cls is QFormer else cls(16, 2, 3)
    x = torch.randn(1, 3, 4, 16)
    assert not torch.allclose(pool(x), pool(x.flip(1)), atol=1e-6)
    with pytest.raises(ValueError, match="at most 3"):
        pool(torch.randn(1, 4, 4, 16))


def test_pre_fusion_mixes_both_streams():
    torch.manual_seed(0)
    fuse = PreFusion(hidden=16, num_tokens=2, heads=4)
    video, audio = torch.randn(2, 3, 16), torch.randn(2, 5, 16)
    out = fuse(video, audio)
    assert out.shape == (2, 2, 16)
    assert not torch.allclose(out, fuse(video, torch.randn(2, 5, 16)))
    assert not torch.allclose(out, fuse(torch.randn(2, 3, 16), audio))


def test_heads_must_divide_width():
    with pytest.raises(ValueError, match="fusion_heads=5"):
        build_pool("qformer", dim=16, num_queries=2, num_times=1, layers=1, heads=5)
