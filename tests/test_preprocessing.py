import json

import numpy as np
import pytest

from hep_event_models import schema
from hep_event_models.config import load_object_config
from hep_event_models.io import EventReader
from hep_event_models.preprocessing import ANGLE_SCALE, FeatureTransform, ObjectPreprocessor


def _fit(kind, x, chunks=4, **kw):
    t = FeatureTransform("f", kind, **kw)
    for part in np.array_split(x, chunks):
        t.partial_fit(part)
    return t.finalize()


RNG = np.random.default_rng(0)
CASES = {
    schema.STANDARD: RNG.normal(3.0, 2.0, 20_000),
    schema.LOG_STANDARD: RNG.lognormal(3.0, 0.8, 20_000),
    schema.QUANTILE: np.concatenate([np.zeros(5_000), RNG.exponential(2.0, 15_000)]),
    schema.ANGLE: RNG.uniform(-np.pi, np.pi, 20_000),
    schema.INTEGER: RNG.poisson(9.0, 20_000).astype(float),
    schema.BINARY: (RNG.uniform(size=20_000) < 0.3).astype(float),
    schema.CATEGORICAL: RNG.choice([-1.0, 1.0], 20_000),
    schema.SCORE: np.concatenate([RNG.beta(0.3, 5, 10_000), RNG.beta(8, 0.2, 10_000), np.ones(100)]),
}


@pytest.mark.parametrize("kind", list(CASES))
def test_exact_inverse_every_kind(kind):
    x = CASES[kind]
    t = _fit(kind, x)
    z = t.forward(x)
    assert z.shape == (x.size, t.input_width) and z.dtype == np.float32 and np.isfinite(z).all()
    back = t.inverse(z)
    if kind in schema.DISCRETE_KINDS:
        np.testing.assert_array_equal(back, x)
    elif kind == schema.ANGLE:
        np.testing.assert_allclose(np.angle(np.exp(1j * (back - x))), 0, atol=1e-6)
    else:
        np.testing.assert_allclose(back, x, rtol=2e-5, atol=2e-6)
    # and through JSON
    t2 = FeatureTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    np.testing.assert_array_equal(t2.forward(x), z)


def test_standard_moments_streamed_exactly():
    x = CASES[schema.STANDARD]
    t = _fit(schema.STANDARD, x, chunks=7)
    assert t.stats["mean"] == pytest.approx(x.mean(), rel=1e-12)
    assert t.stats["std"] == pytest.approx(x.std(), rel=1e-10)
    z = t.forward(x)[:, 0]
    assert abs(z.mean()) < 1e-6 and abs(z.std() - 1) < 1e-6


def test_log_standard_handles_zeros_and_never_overflows():
    x = np.concatenate([np.zeros(1000), RNG.lognormal(0, 1, 9000)])
    t = _fit(schema.LOG_STANDARD, x)
    assert t.stats["offset"] > 0
    z = t.forward(x)
    assert np.isfinite(z).all() and abs(float(z.mean())) < 0.1
    np.testing.assert_allclose(t.inverse(z), x, atol=1e-5)
    assert np.isfinite(t.inverse(np.array([[1e6], [-1e6]]))).all()  # wild decoder output: no overflow


def test_angle_wraps():
    t = _fit(schema.ANGLE, CASES[schema.ANGLE])
    assert t.input_width == 3 and t.output_width == 1
    a, b = t.forward(np.array([np.pi - 1e-4])), t.forward(np.array([-np.pi + 1e-4]))
    assert np.abs(a[:, :2] - b[:, :2]).max() < 1e-3  # (cos, sin): neighbours across the seam stay neighbours
    # the third column is φ / s, linear in φ (one latent axis can carry it), unit variance
    np.testing.assert_allclose(a[0, 2] * ANGLE_SCALE, np.pi - 1e-4, rtol=1e-6)
    assert abs(t.forward(CASES[schema.ANGLE])[:, 2].std() - 1) < 0.02
    x = np.array([0.3, -3.1, 3.1])
    np.testing.assert_array_equal(t.target(x), t.forward(x)[:, 2:])
    # a decoded φ / s is wrapped back into [-π, π): a full turn off decodes to the same angle
    back = t.inverse(t.target(x) + 2 * np.pi / ANGLE_SCALE)
    np.testing.assert_allclose(np.angle(np.exp(1j * (back - x))), 0, atol=1e-6)
    assert np.abs(back).max() <= np.pi
    # linear_angle=False (ObjectTokenizerSettings.linear_angles): (cos, sin) in and out
    cs = _fit(schema.ANGLE, CASES[schema.ANGLE], linear_angle=False)
    assert cs.input_width == 2 and cs.output_width == 2 and "linear" not in cs.stats
    np.testing.assert_allclose(np.angle(np.exp(1j * (cs.inverse(cs.forward(x)) - x))), 0, atol=1e-6)
    # transforms saved before the linear column (stats without "linear") keep (cos, sin)
    old = FeatureTransform.from_dict({"name": "phi", "kind": schema.ANGLE, "stats": {}})
    assert old.input_width == 2 and old.output_width == 2 and old.forward(x).shape == (3, 2)
    np.testing.assert_allclose(old.inverse(old.forward(x)), x, atol=1e-6)


def test_score_quantile_transform_spreads_peaks_and_stays_bounded():
    x = CASES[schema.SCORE]
    t = _fit(schema.SCORE, x)
    z = t.forward(x)[:, 0]
    assert 0.9 < z.std() < 1.1  # probit of a uniformised variable
    out = t.inverse(np.array([[-50.0], [50.0]]))
    assert out.min() >= 0.0 and out.max() <= 1.0


def test_discrete_targets_and_logit_decoding():
    t = _fit(schema.INTEGER, CASES[schema.INTEGER])
    assert t.output_width == t.stats["num_classes"]
    tgt = t.target(np.array([0.0, 5.0, 1000.0]))
    assert tgt[0] == 0 - t.stats["offset_class"] and tgt[2] == t.stats["num_classes"] - 1
    logits = np.full((1, t.output_width), -5.0)
    logits[0, 7] = 3.0
    assert t.inverse(logits)[0] == 7 + t.stats["offset_class"]
    c = _fit(schema.CATEGORICAL, CASES[schema.CATEGORICAL])
    assert c.stats["categories"] == [-1.0, 1.0]
    assert c.inverse(np.array([[0.1, 2.0]]))[0] == 1.0
    b = _fit(schema.BINARY, CASES[schema.BINARY])
    assert b.inverse(np.array([[0.3], [-0.2]])).tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="binary feature"):
        _fit(schema.BINARY, np.array([0.0, 2.0]))


def test_regressed_integers_round_into_the_fitted_range():
    x = CASES[schema.INTEGER]
    t = FeatureTransform("n", schema.INTEGER, regress_integer=True)
    t.partial_fit(x)
    t.finalize()
    assert t.stats["regress"] and t.output_width == 1 and t.input_width == 1
    lo, hi = t.stats["offset_class"], t.stats["offset_class"] + t.stats["num_classes"] - 1
    # the target is the standardised value; decoding rounds it and clips to the fitted range
    np.testing.assert_array_equal(t.target(x), t.forward(x))
    np.testing.assert_array_equal(t.inverse(t.target(x) + 0.4 / t.stats["std"]), x)
    np.testing.assert_array_equal(t.inverse(t.target(x) - 0.4 / t.stats["std"]), x)
    far = (np.array([[lo - 50.0], [hi + 50.0]]) - t.stats["mean"]) / t.stats["std"]
    assert t.inverse(far).tolist() == [lo, hi]
    t2 = FeatureTransform.from_dict(json.loads(json.dumps(t.to_dict())))
    assert t2.output_width == 1 and t2.inverse(t2.target(x)).tolist() == x.tolist()


def test_bad_input_is_rejected():
    t = FeatureTransform("pt", schema.STANDARD)
    with pytest.raises(ValueError, match="'pt': NaN/inf"):
        t.partial_fit(np.array([1.0, np.nan]))
    with pytest.raises(ValueError, match="no real objects"):
        FeatureTransform("pt", schema.STANDARD).finalize()


def test_object_preprocessor_on_generated_jets(samples):
    cfg = load_object_config("jets")
    pre = ObjectPreprocessor(cfg)
    n = 0
    for b in EventReader(samples["ttbar"], selection=[cfg], chunk_size=2_500):
        c = b.collections["jets"]
        pre.partial_fit(c.values[c.mask])
        n += int(c.mask.sum())
    pre.finalize()
    assert pre.transforms[0].stats["count"] == n
    b = next(iter(EventReader(samples["ttbar"], selection=[cfg], chunk_size=3_000)))
    x = b.collections["jets"].values[b.collections["jets"].mask]
    z = pre.forward(x)
    assert z.shape == (len(x), pre.input_width) and np.isfinite(z).all()
    back = pre.inverse_model_space(z)
    for j, t in enumerate(pre.transforms):
        if t.kind in schema.DISCRETE_KINDS:
            np.testing.assert_array_equal(back[:, j], x[:, j], err_msg=t.name)
        elif t.kind == schema.ANGLE:
            np.testing.assert_allclose(np.sin(back[:, j] - x[:, j]), 0, atol=1e-5)
        else:
            np.testing.assert_allclose(back[:, j], x[:, j], rtol=1e-4, atol=1e-5, err_msg=t.name)
    d = json.loads(json.dumps(pre.to_dict()))
    pre2 = ObjectPreprocessor.from_dict(d, cfg)
    np.testing.assert_array_equal(pre2.forward(x), z)
    with pytest.raises(ValueError, match="do not match config"):
        ObjectPreprocessor.from_dict(d, load_object_config("muons"))


def test_sorted_interp_equals_numpy_bit_for_bit():
    from hep_event_models.preprocessing import _interp

    rng = np.random.default_rng(3)
    knots = np.unique(np.concatenate([rng.random(1000) ** 4, [0.0, 1.0]]))
    probs = np.linspace(1e-6, 1 - 1e-6, knots.size)
    x = np.concatenate([rng.random(5000), rng.random(3000) ** 8, [-0.5, 1.5, np.nan, 0.0, 1.0], knots[:50]])
    rng.shuffle(x)
    for v in (x, x[:100], x[:8050].reshape(-1, 7)[:, 2], x[:8050].reshape(-1, 7)):
        np.testing.assert_array_equal(_interp(v, knots, probs), np.interp(v, knots, probs))
