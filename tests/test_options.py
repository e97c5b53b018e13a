"""The readers of option values (``bruno.commands.options``): values in, errors naming the flag out."""
from __future__ import annotations

import re

import pytest

from bruno.commands.options import check_positive, parse_contexts, parse_integers, parse_ks, parse_samples
from bruno.errors import ConfigError
from bruno.reconstruction import FAST_SAMPLES


def test_contexts_flag() -> None:
    assert parse_contexts("20, 40,60", 80) == [20, 40, 60]
    with pytest.raises(ConfigError, match=r"--contexts '3,80': 80 is out of range, expected indices in \[0, 80\)"):
        parse_contexts("3,80", 80)
    with pytest.raises(ConfigError, match=r"--contexts '3,3': repeated slice index"):
        parse_contexts("3,3", 80)
    with pytest.raises(ConfigError, match=r"--contexts 'a,b': expected comma-separated slice indices"):
        parse_contexts("a,b", 80)
    with pytest.raises(ConfigError, match=r"--contexts ' ': no slice index given \(for the prior, use --num-contexts 0"):
        parse_contexts(" ", 80)


def test_samples_option_accepts_fast() -> None:
    assert parse_samples("fast") == FAST_SAMPLES == 20 and parse_samples(" 7") == 7
    for bad in ("0", "-3", "many", "2.5"):
        with pytest.raises(ConfigError, match=rf"--samples '{re.escape(bad)}': expected an integer >= 1 or 'fast' \(20 samples\)"):
            parse_samples(bad)


def test_integers_and_positive_numbers() -> None:
    assert parse_integers("--poses", "20,45, 70") == [20, 45, 70] and parse_integers("--poses", "") == []
    with pytest.raises(ConfigError, match=r"--poses '1,,3': expected comma-separated integers"):  # an empty item is a typo
        parse_integers("--poses", "1,,3")
    assert parse_ks("9, 3,1", 16, [1]) == [1, 3, 9]  # the table's columns in increasing k
    with pytest.raises(ConfigError, match=r"k = 16 does not fit, expected each k in \[1, N − 1 = 15\]"):
        parse_ks("1,16", 16, [1])
    with pytest.raises(ConfigError, match=r"--poses '20,x': expected comma-separated integers, e.g. 20,45,70"):
        parse_integers("--poses", "20,x")
    check_positive("--sigma", 0.5)
    check_positive("--translation-mm", 0.0, allow_zero=True)
    check_positive("--search-mm", None)
    with pytest.raises(ConfigError, match=r"--sigma 0.0: expected a number > 0"):
        check_positive("--sigma", 0.0)
    with pytest.raises(ConfigError, match=r"--translation-mm -1.0: expected a number >= 0"):
        check_positive("--translation-mm", -1.0, allow_zero=True)
