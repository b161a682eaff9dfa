import pytest

from hep_event_models import schema
from hep_event_models.config import ObjectConfig, config_dir, load_object_config


def test_type_ids_and_special_tokens_match_design():
    assert schema.TYPE_IDS == {
        "electrons": 4,
        "muons": 5,
        "jets": 6,
        "met": 7,
        "photons": 8,
        "tracks": 9,
        "event": 10,
        "taus": 11,
    }
    assert schema.TYPE_VOCAB_SIZE == 12
    assert schema.SPECIAL_TOKENS == {"[PAD]": 0, "[CLS]": 1, "[SEP]": 2, "[MASK]": 3, "[UNK]": 4}
    assert max(schema.SPECIAL_TOKENS.values()) < schema.NUM_RESERVED_IDS


def test_schema_has_every_design_key():
    expected = {
        "common/electrons": "pt eta phi charge trk_iso03",
        "common/muons": "pt eta phi charge trk_iso03",
        "common/taus": "pt eta phi charge is_1prong",
        "common/photons": "pt eta phi trk_iso03",
        "common/jets": "pt eta phi mass n_trk",
        "common/tracks": "pt eta phi d0 z0",
        "common/met": "pt phi sumet",
        "common/event": "pvx pvy pvz mu experiment_id is_simulation",
        "atlas/electrons": "LHLoose LHMedium LHTight topoetcone20 ptvarcone30 mass",
        "atlas/muons": "quality muonType passIDCuts passPresel topoetcone20 ptvarcone30",
        "atlas/taus": "NNDecayMode RNNJetScore RNNEleScore EleRNNLoose_v1 EleRNNMedium_v1 EleRNNTight_v1",
        "atlas/photons": "isLoose isTight isCleaning author topoetcone20 topoetcone40 ptcone20",
        "atlas/jets": "DL1d_pb DL1d_pc DL1d_pu GN2_pb GN2_pc GN2_pu QG_nTracks QG_tracksWidth QG_tracksC1",
        "atlas/tracks": "qOverP chiSquared nDoF",
        "atlas/event": "event_number run_number mcChannelNumber",
    }
    for group, keys in expected.items():
        top, coll = group.split("/")
        c = schema.COLLECTIONS[coll]
        fields = c.common if top == "common" else c.atlas
        assert [f.name for f in fields] == keys.split(), group
    for c in schema.COLLECTIONS.values():
        for f in c.fields.values():
            assert f.kind in schema.FEATURE_KINDS


def test_format_version_check():
    schema.check_format_version("1.0")
    schema.check_format_version(b"1.3")
    with pytest.raises(ValueError, match="unknown format_version"):
        schema.check_format_version("2.0")
    with pytest.raises(ValueError, match="unknown format_version"):
        schema.check_format_version("banana")


@pytest.mark.parametrize("name", ["jets", "electrons", "muons", "photons", "taus", "tracks", "met"])
def test_shipped_object_configs_resolve_against_schema(name):
    cfg = load_object_config(name)
    assert cfg.object == name
    assert len(cfg.features) >= 3
    coll = schema.COLLECTIONS[name]
    for f in cfg.features:
        assert f.source == coll.path_of(f.name)
        assert f.kind in schema.FEATURE_KINDS
    kinds = {f.name: f.kind for f in cfg.features}
    assert kinds["phi"] == schema.ANGLE
    assert kinds["pt"] == schema.LOG_STANDARD


def test_seed_lessons_in_configs():
    tracks = {f.name: f.kind for f in load_object_config("tracks").features}
    assert tracks["nDoF"] == schema.INTEGER  # not logged (seed 002)
    jets = {f.name: f.kind for f in load_object_config("jets").features}
    assert all(jets[k] == schema.SCORE for k in ("DL1d_pb", "GN2_pb", "GN2_pu"))
    e = {f.name: f.kind for f in load_object_config("electrons.yaml").features}
    assert e["charge"] == schema.CATEGORICAL and e["LHTight"] == schema.BINARY
    assert (config_dir() / "event.yaml").exists()


def test_config_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="unknown object 'gluinos'"):
        ObjectConfig.from_dict({"object": "gluinos", "features": ["pt"]})
    with pytest.raises(ValueError, match="'bogus' is not in the schema of 'jets'"):
        ObjectConfig.from_dict({"object": "jets", "features": ["pt", "bogus"]})
    with pytest.raises(ValueError, match="kind 'fuzzy'"):
        ObjectConfig.from_dict({"object": "jets", "features": [{"name": "pt", "kind": "fuzzy"}]})
    with pytest.raises(ValueError, match="duplicate"):
        ObjectConfig.from_dict({"object": "jets", "features": ["pt", "pt"]})
    with pytest.raises(FileNotFoundError, match="shipped configs"):
        load_object_config(tmp_path / "nope.yaml")
    with pytest.raises(ValueError, match="feature 'x' has kind None"):
        ObjectConfig.from_dict({"object": "jets", "features": [{"name": "x", "source": "extra/jets/x"}]})
    cfg = ObjectConfig.from_dict(
        {"object": "jets", "features": [{"name": "x", "source": "extra/jets/x", "kind": "standard"}], "tok": {"a": 1}}
    )
    assert cfg.features[0].source == "extra/jets/x"
    assert cfg.extra == {"tok": {"a": 1}}
    assert ObjectConfig.from_dict(cfg.to_dict()) == cfg
