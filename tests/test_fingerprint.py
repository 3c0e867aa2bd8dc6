"""benchmarks.fingerprint: the check that an optimisation left every table unchanged."""
from benchmarks import fingerprint


def test_fingerprints_repeat_and_notice_a_change():
    case = fingerprint.cases()["mix-overlay2"]
    first = fingerprint.fingerprint(case)
    assert first == fingerprint.fingerprint(case)  # deterministic: same scenario, same seed
    changed = fingerprint.fingerprint({**case, "seed": case["seed"] + 1})
    assert changed.keys() == first.keys() and changed != first


def test_against_a_checkout_runs_there_and_compares(capsys):
    assert fingerprint.main(["--against", str(fingerprint.ROOT), "mix-vfs", "mix-open-loop"]) == 0
    assert "2 of 2 cases identical" in capsys.readouterr().out


def test_check_names_the_case_that_changed(tmp_path, capsys):
    saved = tmp_path / "saved.json"
    assert fingerprint.main(["--save", str(saved), "mix-zfs"]) == 0
    saved.write_text(saved.read_text().replace('"0.0": "', '"0.0": "0'))
    assert fingerprint.main(["--check", str(saved), "mix-zfs"]) == 1
    assert "CHANGED: mix-zfs" in capsys.readouterr().out
