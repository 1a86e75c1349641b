"""What a demanding new user broke by using vethlab as a network engineer would:
odd but valid files, edits and re-runs, kills, wrong arguments."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers import vethlab

ODD_RATE = """\
name: odd
nodes: {a: {}, b: {}}
links:
  - endpoints: [a:e0, b:e0]
    addresses: [10.0.0.1/24, 10.0.0.2/24]
    rate: 8kbit
  - endpoints: [a:e1, b:e1]
    rate: {rate}
"""


@pytest.mark.parametrize("rate", ["100bit", "5tbit"])
def test_rate_tc_cannot_carry_is_bad_input_before_anything_is_built(tmp_path: Path, rate: str) -> None:
    """It was exit 1 after building, with "'I' format requires 0 <= number <= 4294967295"."""
    lab = tmp_path / "odd.yaml"
    lab.write_text(ODD_RATE.replace("{rate}", rate))
    result = vethlab("up", str(lab))
    assert result.returncode == 2, result.stderr
    assert f"{lab}:8: links[1].rate: rate '{rate}' is out of range" in result.stderr
    assert "format requires" not in result.stderr
    assert vethlab("ls").stdout.strip() == "no labs"


def test_link_set_rate_tc_cannot_carry_is_usage_error(tmp_path: Path) -> None:
    lab = tmp_path / "odd.yaml"
    lab.write_text(ODD_RATE.replace("{rate}", "1mbit"))
    vethlab("up", str(lab), check=True)
    result = vethlab("link", "set", "a:e0", "--rate", "1bit")
    assert result.returncode == 2, result.stderr
    assert "--rate: rate '1bit' is out of range" in result.stderr
    assert "format requires" not in result.stderr
