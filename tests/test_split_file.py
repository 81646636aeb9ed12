"""Split files are read in one place: parts united across files, absent parts empty, a broken file one clear error."""
import json

import pytest

from eqchem.data.split_file import read_split, split_keys
from eqchem.errors import InputError


def test_split_keys_unite_the_files_and_absent_parts_are_empty(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"train": ["k1"], "val": ["k2"], "test": ["k3", "k4"]}))
    b.write_text(json.dumps({"test": ["k4", "k5"]}))
    assert split_keys([a, b], "test") == {"k3", "k4", "k5"}
    assert split_keys([b], "val") == set() and read_split(b)["train"] == []
    with pytest.raises(ValueError):
        split_keys([a], "tests")


@pytest.mark.parametrize("text", ["{not json", json.dumps(["k1"]), json.dumps({"test": "k1"})])
def test_a_broken_split_file_is_one_clear_error_naming_it(tmp_path, text):
    path = tmp_path / "split.json"
    path.write_text(text)
    with pytest.raises(InputError, match="split file .*split.json"):
        read_split(path)
    with pytest.raises(InputError, match="split file"):
        read_split(tmp_path / "missing.json")
