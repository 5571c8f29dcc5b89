"""MAE decoder input: each visible patch's encoder token and a mask token elsewhere, at its own grid position."""

import torch

from medssl.encoders import build_encoder
from medssl.heads.decoders import sincos_position_embedding
from medssl.methods.mae import MAE

VIT = {"img_size": 16, "patch_size": 4, "hidden_size": 24, "num_layers": 1, "num_heads": 2}


def test_every_patch_is_decoded_from_its_own_token_at_its_own_position():
    """Naive, with a decoder of no transformer block (each output depends on its own input token only): the
    prediction of grid patch l is ``pred(norm(t + pos_l))``, t the encoder token of patch l when it is visible
    (found by searching ids_keep) and the mask token when it is masked."""
    torch.manual_seed(0)
    mae = MAE(build_encoder("vit_tiny", spatial_dims=2, in_channels=1, **VIT), decoder_dim=16, decoder_depth=0,
              decoder_heads=2).eval()
    torch.nn.init.normal_(mae.decoder.mask_token, std=1.0)
    x = torch.randn(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        pred, pm, grid = mae.forward_masked(x, torch.Generator().manual_seed(3))
        latent = mae.encoder.forward_tokens(x, pm.ids_keep)
        pos = sincos_position_embedding(grid, 16)[0]
        dec = mae.decoder
        for b in range(2):
            keep = pm.ids_keep[b].tolist()
            assert sorted(keep) == [l for l in range(16) if pm.mask[b, l] == 0] and len(keep) == 4
            for l in range(16):
                token = dec.embed(latent[b, keep.index(l)]) if l in keep else dec.mask_token[0, 0]
                assert torch.allclose(pred[b, l], dec.pred(dec.norm(token + pos[l])), atol=1e-5), (b, l)
