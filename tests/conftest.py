"""Shared fixtures: small generated samples, made once per test session."""

from __future__ import annotations

import pytest
import torch

from hep_event_models.generator import generate

SAMPLE_EVENTS = {"hzz4l": 20_000, "zz4l": 20_000, "dy": 20_000, "ttbar": 10_000}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def samples(tmp_path_factory) -> dict[str, str]:
    """One HDF5 file per process, generated with fixed seeds."""
    d = tmp_path_factory.mktemp("samples")
    out = {}
    for i, (proc, n) in enumerate(SAMPLE_EVENTS.items()):
        path = d / f"{proc}.h5"
        generate(proc, n, path, seed=100 + i, chunk_size=10_000, progress=False, workers=1)
        out[proc] = str(path)
    return out


@pytest.fixture()
def small_file(tmp_path) -> str:
    """A fresh 2,000-event dy file a test may modify."""
    path = tmp_path / "small.h5"
    generate("dy", 2_000, path, seed=7, chunk_size=1_000, progress=False, workers=1)
    return str(path)


# a small EventTokenizer (few codes, few steps) for event-level tests: fitted once per session
EVENT_TEST_OBJECTS = {"electrons": "electrons.yaml", "muons": "muons.yaml", "met": "met.yaml", "jets": "jets.yaml"}
EVENT_TEST_SETTINGS = {"codebook_size": 256, "num_quantizers": 3, "hidden_dim": 64, "decoder_hidden_dim": 128}


@pytest.fixture(scope="session")
def event_config(tmp_path_factory) -> str:
    """An event config with four object types (tracks and rare objects left out for speed)."""
    import yaml

    from hep_event_models.config import config_dir

    d = tmp_path_factory.mktemp("event_config")
    cfg = {
        "objects": {k: str(config_dir() / v) for k, v in EVENT_TEST_OBJECTS.items()},
        "context": [{"name": "mu", "group": "event", "bins": 50, "range": [0.0, 100.0]}],
    }
    path = d / "event.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


@pytest.fixture(scope="session")
def event_tokenizer_dir(samples, event_config, tmp_path_factory) -> str:
    from hep_event_models.training.event_tokenizer import fit_event_tokenizer

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("event_tokenizer")
    fit_event_tokenizer(
        event_config,
        [samples["hzz4l"], samples["dy"], samples["ttbar"]],
        out,
        settings=EVENT_TEST_SETTINGS,
        max_steps=300,
        batch_size=1024,
        lr=2e-3,
        progress=False,
        diagnose_objects=5000,
    )
    return str(out)


@pytest.fixture()
def event_tokenizer(event_tokenizer_dir):
    from hep_event_models.event_tokenizer import EventTokenizer

    return EventTokenizer.from_pretrained(event_tokenizer_dir)


def reload_identical(model, batch: dict, path):
    """Save ``model`` to ``path``, load it back through ``AutoModelForSequenceClassification``
    and check it gives the same logits on ``batch``; returns the loaded model (eval mode)."""
    from transformers import AutoModelForSequenceClassification

    model.eval()
    with torch.no_grad():
        want = model(**batch).logits
    model.save_pretrained(path)
    loaded = AutoModelForSequenceClassification.from_pretrained(path).eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(**batch).logits, want)
    return loaded


def tiny_model_config(tok, **kw):
    """A ``HepEventConfig`` for ``tok`` small enough for CPU tests (1 layer × 32); ``kw``
    sets or overrides any other option."""
    from hep_event_models import HepEventConfig

    size = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    return HepEventConfig.from_tokenizer(tok, **{**size, **kw})


@pytest.fixture(scope="session")
def token_data(event_tokenizer_dir, samples, tmp_path_factory):
    """Tokenized hzz4l, zz4l and dy events (Parquet), one directory each split."""
    from hep_event_models.tokenized import tokenize_dataset

    d = tmp_path_factory.mktemp("token_data")
    files = []
    for i, proc in enumerate(("hzz4l", "zz4l", "dy")):
        f = d / f"{proc}.h5"
        generate(proc, 3000, f, seed=40 + i, progress=False, workers=1)
        files.append(str(f))
    out = d / "ds"
    tokenize_dataset(event_tokenizer_dir, files, out, progress=False)
    return {"dir": str(out), "files": files}
