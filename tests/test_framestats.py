import cv2
import numpy as np

from vidcorpus.media.framestats import FrameStatistics, laplacian_variance


def test_laplacian_variance_matches_numpy():
    rng = np.random.default_rng(7)
    for shape in ((90, 160), (160, 90), (2, 2)):
        gray = rng.integers(0, 256, shape, dtype=np.uint8)
        expected = cv2.Laplacian(gray, cv2.CV_16S).astype(np.float64).var()
        assert np.isclose(laplacian_variance(gray), expected, rtol=1e-12, atol=1e-9)


def test_statistics_tell_flat_dark_frames_from_detailed_ones():
    stats = FrameStatistics()
    flat = stats(np.full((90, 160), 10, np.uint8))
    checker = stats(((np.indices((90, 160)).sum(axis=0) % 2) * 255).astype(np.uint8))
    assert (flat.brightness, flat.sharpness, flat.motion) == (10.0, 0.0, 0.0)
    assert checker.sharpness > 1e4
    assert abs(checker.brightness - 127.5) < 1
    assert abs(checker.motion - (10 + 245) / 2) < 1   # mean |checker - flat|: 10 or 245
