"""clay_core.parsing: the parsers the CLI, the collection and the QGIS algorithms share."""

from __future__ import annotations

import pytest

from clay_core.errors import ClayInputError
from clay_core.parsing import comma_list, parse_date, split_chip_ref


def test_comma_list_drops_blanks_and_spaces() -> None:
    assert comma_list(" a, b ,,c,") == ["a", "b", "c"]
    assert comma_list("") == [] and comma_list(None) == []


def test_split_chip_ref_takes_only_a_known_file_before_the_last_colon() -> None:
    files = {"a.gpq", "b.gpq"}
    assert split_chip_ref("a.gpq:33UUU_0001", files) == ("a.gpq", "33UUU_0001")
    assert split_chip_ref("33UUU_0001", files) == (None, "33UUU_0001")
    # a chip id holding ':' stays whole unless a searched file's name precedes its last ':'
    assert split_chip_ref("scene:12:7", files) == (None, "scene:12:7")
    assert split_chip_ref("b.gpq:scene:12", files) == (None, "b.gpq:scene:12")


def test_parse_date_names_the_option() -> None:
    assert parse_date(" 2017-02-16 ").isoformat() == "2017-02-16"
    with pytest.raises(ClayInputError, match="start date '16/02/2017' is not a date"):
        parse_date("16/02/2017", "start date")
