"""nftables spoken to in process (libnftables through ctypes) does what the `nft`
command does, on the real kernel: a JSON batch lands in the namespace it is meant
for and nowhere else, the reads give what `nft -j` lists, and a refused batch
raises with nft's own error text.  The same checks run through the `nft` command,
the fallback where the library cannot be loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from vethlab.errors import KernelError
from vethlab.kernel import nftables

BATCH = {"nftables": [
    {"add": {"table": {"family": "inet", "name": "probe"}}},
    {"add": {"chain": {"family": "inet", "table": "probe", "name": "owner-x"}}},
    {"add": {"chain": {"family": "inet", "table": "probe", "name": "fwd", "type": "filter", "hook": "forward",
                       "prio": 0, "policy": "accept"}}},
    {"add": {"rule": {"family": "inet", "table": "probe", "chain": "fwd",
                      "expr": [{"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
                               {"counter": None}, {"accept": None}]}}},
]}
BAD = {"nftables": [{"add": {"chain": {"family": "inet", "table": "nosuch", "name": "c"}}}]}


def _nft(ns: str | None, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = (["ip", "netns", "exec", ns] if ns else []) + ["nft", *args]
    return subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)


def everything(ns: str | None) -> list[dict[str, Any]]:
    """The whole ruleset of `ns` as `nft -j list ruleset` gives it."""
    return list(json.loads(_nft(ns, "-j", "list", "ruleset").stdout or "{}").get("nftables", []))


def listed(ns: str | None) -> list[dict[str, Any]]:
    """The same, nft's version item left out."""
    return [item for item in everything(ns) if "metainfo" not in item]


@pytest.fixture(params=["library", "command"])
def way(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "command":
        monkeypatch.setattr(nftables, "_library", lambda: None)
    else:
        assert nftables._library() is not None, "libnftables.so.1 (Debian: libnftables1, a dependency of nftables)"
    return str(request.param)


def test_a_batch_lands_in_its_namespace_only(way: str) -> None:
    subprocess.run(["ip", "netns", "add", "nftp"], check=True)
    try:
        nftables.apply("nftp", BATCH, "apply the probe")
        assert listed(None) == []
        inside = listed("nftp")
        assert [item["chain"]["name"] for item in inside if "chain" in item] == ["owner-x", "fwd"]
        assert nftables.ruleset("nftp") == everything("nftp")
        assert nftables.tables("nftp") == {"probe": ["owner-x", "fwd"]} and nftables.tables(None) == {}
        assert nftables.chains("nftp", "probe") == ["owner-x", "fwd"] and nftables.chains(None, "probe") is None

        nftables.apply(None, BATCH, "apply the probe")
        assert listed(None) == listed("nftp")
        nftables.delete(None, "probe")  # no chain marks it as a lab's (vethlab_LAB with owner chain): it stays
        assert nftables.chains(None, "probe") == ["owner-x", "fwd"]
        nftables.apply(None, {"nftables": [{"delete": {"table": {"family": "inet", "name": "probe"}}}]}, "delete it")
        assert listed(None) == [] and nftables.ruleset(None) == everything(None)
    finally:
        subprocess.run(["ip", "netns", "del", "nftp"], check=True)


def test_a_refused_batch_raises_with_nfts_own_words(way: str) -> None:
    said = _nft(None, "-j", "-f", "-", stdin=json.dumps(BAD)).stderr.strip()
    assert said
    with pytest.raises(KernelError) as caught:
        nftables.apply(None, BAD, "add the chain")
    assert str(caught.value) == f"cannot add the chain: nft said: {said}"
    assert listed(None) == []


CROWDED = """
import json, os, sys
from vethlab.kernel import nftables
held = [os.open("/dev/null", os.O_RDONLY) for _ in range(1100)]
nftables.apply(None, json.loads(sys.argv[1]), "apply the probe")
print(json.dumps(nftables.tables(None)))
"""


def test_a_process_holding_a_thousand_descriptors_is_not_aborted() -> None:
    """libnftables waits with select(), and glibc aborts the process when its socket's
    descriptor is past FD_SETSIZE (1024), as in an `up` of 1000 nodes holding a netlink
    socket per namespace: such a process runs the `nft` command instead."""
    done = subprocess.run([sys.executable, "-c", CROWDED, json.dumps(BATCH)], capture_output=True, text=True,
                          check=False)
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout) == {"probe": ["owner-x", "fwd"]}
    assert [item["chain"]["name"] for item in listed(None) if "chain" in item] == ["owner-x", "fwd"]
