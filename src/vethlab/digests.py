"""sha1 and sha256 from CPython's own built-in modules, not from hashlib.

`import hashlib` loads OpenSSL's libcrypto: ~2 ms of every `up` and `plan`, for
digests of short texts (node fingerprints, derived names, rule sets) and of one
topology file (the cache key; the built-in sha256 reads ~150 MB/s here, so a
1000-node file costs it ~0.3 ms more than OpenSSL).  The digests are the same
(tests/unit/test_digests.py).  cni/link.py does the same for the CNI plugin.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: nothing else here needs it (mypy knows the name)

if TYPE_CHECKING:
    from hashlib import blake2b as blake2b
    from hashlib import sha1 as sha1
    from hashlib import sha256 as sha256
else:
    try:
        from _sha1 import sha1
    except ImportError:  # not CPython
        from hashlib import sha1
    try:
        from _sha256 import sha256  # CPython <= 3.11
    except ImportError:
        try:
            from _sha2 import sha256  # CPython >= 3.12
        except ImportError:
            from hashlib import sha256
    try:
        from _blake2 import blake2b  # node fingerprints: ~2x the speed of the built-in sha1 on ~400 bytes
    except ImportError:
        from hashlib import blake2b

__all__ = ["blake2b", "sha1", "sha256"]
