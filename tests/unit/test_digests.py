"""vethlab.digests: the same sha1/sha256 as hashlib's, without loading OpenSSL at start-up."""

from __future__ import annotations

import hashlib

from helpers import fresh_python
from vethlab import digests


def test_the_digests_are_hashlibs() -> None:
    for data in (b"", b"abc", b"ns1\x00e0:10.0.0.1/24\n" * 3, bytes(range(256)) * 1000):
        assert digests.sha256(data).hexdigest() == hashlib.sha256(data).hexdigest()
        assert digests.sha1(data).hexdigest() == hashlib.sha1(data).hexdigest()
        assert digests.blake2b(data, digest_size=8).hexdigest() == hashlib.blake2b(data, digest_size=8).hexdigest()
        grown = digests.sha256()
        grown.update(data[:7])
        grown.update(data[7:])
        assert grown.digest() == hashlib.sha256(data).digest()


def test_planning_and_building_load_no_openssl() -> None:
    """What `up` and `plan` import (and the digests they compute on the way) leave
    hashlib's OpenSSL backend unloaded: ~2 ms of each run's start-up."""
    probe = ("import sys, vethlab.cli.lifecycle, vethlab.lab, vethlab.reconcile.up, vethlab.drivers.registry\n"
             "from vethlab.model.hosts import hosts_digest\n"
             "from vethlab.model.desired import Desired, DesiredNode, fingerprints\n"
             "d = Desired(lab='x', prefix=False, nodes={'a': DesiredNode('a', 'x-a')})\n"
             "assert len(fingerprints(d)['a']) == 16\n"
             "hosts_digest([('10.0.0.1', 'a')])\n"
             "print(sorted({'hashlib', '_hashlib'} & set(sys.modules)))")
    out = fresh_python(probe)
    assert out.strip() == "[]"
