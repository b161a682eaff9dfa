import json
import subprocess
import sys

import h5py

from hep_event_models.cli import main


def test_generate_then_inspect(tmp_path, capsys):
    out = tmp_path / "h.h5"
    assert (
        main(
            [
                "generate",
                "--process",
                "hzz4l",
                "--events",
                "1500",
                "--seed",
                "3",
                "--out",
                str(out),
                "--quiet",
                "--workers",
                "1",
                "--json",
                str(tmp_path / "gen.json"),
            ]
        )
        == 0
    )
    assert out.exists()
    summary = json.loads((tmp_path / "gen.json").read_text())
    assert summary["n_events"] == 1500 and summary["events_per_second"] > 0
    capsys.readouterr()
    assert main(["inspect", str(out), "--json", str(tmp_path / "report.json")]) == 0
    text = capsys.readouterr().out
    assert "1,500 events" in text and "labels: hzz4l=1,500" in text and "no problems found" in text
    assert "muons:" in text and "GN2_pb" in text
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["n_events"] == 1500 and report["problems"] == []
    mu = report["collections"]["muons"]
    assert mu["objects"] > 1000 and mu["features"]["pt"]["min"] >= 5.0
    assert report["collections"]["event"]["features"]["mu"]["mean"] > 10


def test_inspect_reports_every_problem_and_fails(small_file, tmp_path, capsys):
    with h5py.File(small_file, "r+") as f:
        del f["atlas/taus/RNNJetScore"]
        n = f["common/jets/n"][:]
        n[3] += 2
        f["common/jets/n"][:] = n
    rc = main(["inspect", small_file, "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "atlas/taus: missing key 'RNNJetScore'" in out
    assert "common/jets/mask: mask disagrees with common/jets/n in 1 events (first: event 3" in out
    assert len(json.loads((tmp_path / "r.json").read_text())["problems"]) == 2


def test_inspect_missing_file(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope*.h5")]) == 2
    assert "no files match" in capsys.readouterr().err


def test_console_script_help():
    for args in ([], ["generate"], ["inspect"]):
        r = subprocess.run(
            [sys.executable, "-m", "hep_event_models.cli", *args, "--help"], capture_output=True, text=True, check=False
        )
        assert r.returncode == 0, r.stderr
        assert "usage:" in r.stdout
