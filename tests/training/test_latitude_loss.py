import math

import pytest
import torch

from models.training.latitude_loss import latitude_weighted_mse, latitude_weights


@pytest.mark.parametrize("h", [1, 2, 7, 64])
def test_weights_equal_the_published_formula(h):
    expected = [abs(math.cos(((2 * i - h + 1) / (2 * h)) * math.pi)) for i in range(h)]
    assert torch.allclose(latitude_weights(h, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64))


def test_weights_are_symmetric_and_largest_at_the_equator():
    w = latitude_weights(64)
    assert torch.allclose(w, w.flip(0))
    assert w[31] > 0.99 and w[0] < 0.03


def test_loss_weights_each_latent_row():
    h, w = 8, 16
    pred, target = torch.zeros(2, 4, 3, h, w), torch.zeros(2, 4, 3, h, w)
    weights = latitude_weights(h)
    for row in range(h):
        p = pred.clone()
        p[..., row, :] = 2.0  # squared error 4 on that row only
        expected = 4.0 * weights[row] / h
        assert latitude_weighted_mse(p, target).item() == pytest.approx(expected.item(), rel=1e-5)


def test_loss_is_not_plain_mse_and_rejects_shape_mismatch():
    pred, target = torch.randn(1, 4, 2, 8, 16), torch.randn(1, 4, 2, 8, 16)
    plain = torch.nn.functional.mse_loss(pred, target)
    assert not torch.isclose(latitude_weighted_mse(pred, target), plain)
    with pytest.raises(ValueError):
        latitude_weighted_mse(pred, target[..., :8])


def test_agrees_with_the_media_helper():
    from models.media.erp import latitude_weights as media_weights

    for h in (3, 8, 64):
        assert torch.allclose(latitude_weights(h, dtype=torch.float64), torch.from_numpy(media_weights(h)).double())
