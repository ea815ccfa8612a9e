"""A tile that cannot be registered fails alone, with its error text; its batch neighbours still register."""

import numpy as np

from pipeline import PipelineConfig
from pipeline.actors import RegistrarActor, TileInput
from tests.conftest import SAMPLE, read


def test_a_bad_tile_fails_alone_with_its_error():
    opt = read(SAMPLE / "s1s2_volkov" / "142_opt.tif")[:, :128, :128]
    sar = read(SAMPLE / "s1s2_volkov" / "142_sar.tif")[:, :128, :128].astype(np.float32)
    actor = RegistrarActor(PipelineConfig(device="cpu"))  # the actor class, in process
    bad_sar = np.full_like(sar, np.nan)[:, :64]  # wrong size, no data
    out = actor.register([TileInput(0, opt, sar), TileInput(1, opt, bad_sar), TileInput(2, opt, sar)])
    assert [o.index for o in out] == [0, 1, 2]
    assert out[1].flow is None and "InvalidInputError" in out[1].error
    assert not out[0].error and out[0].flow.shape == (2, 128, 128)
    np.testing.assert_allclose(out[2].flow, out[0].flow, atol=1e-3)
