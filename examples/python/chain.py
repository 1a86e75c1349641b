"""A chain of routers built in Python: a loop where a file would repeat itself.

    a --- r1 --- r2 --- ... --- rN --- b

Link i is 10.20.i.0/30 (left end .1, right end .2).  Each router forwards and has
a route to every subnet it is not on, through the neighbour on that side; `a`
and `b` route everything through their only neighbour.  As root, or as anyone
inside `vethlab sandbox`:

    python3 examples/python/chain.py 4          # build, ping a -> b across 4 routers, tear down
    python3 examples/python/chain.py 4 --yaml   # print the same lab as a topology file; build nothing
"""

from __future__ import annotations

import re
import sys

import yaml

from vethlab import Lab


def subnet(i: int, host: int) -> str:
    return f"10.20.{i}.{host}"


def build(routers: int) -> Lab:
    lab = Lab.new("chain")
    names = ["a", *(f"r{k}" for k in range(1, routers + 1)), "b"]
    last = len(names) - 2  # index of the last link
    lab.add_node("a", routes=[f"default via {subnet(0, 2)}"])
    for k in range(1, routers + 1):  # router k sits between link k-1 (its .2) and link k (its .1)
        routes = [f"{subnet(j, 0)}/30 via {subnet(k - 1, 1) if j < k else subnet(k, 2)}"
                  for j in range(last + 1) if j not in (k - 1, k)]
        lab.add_node(names[k], sysctls={"net.ipv4.ip_forward": 1}, routes=routes)
    lab.add_node("b", routes=[f"default via {subnet(last, 1)}"])
    for i in range(last + 1):
        lab.add_link(f"{names[i]}:right", f"{names[i + 1]}:left", addresses=[f"{subnet(i, 1)}/30", f"{subnet(i, 2)}/30"])
    return lab


def main(argv: list[str]) -> int:
    routers = int(argv[0]) if argv else 3
    lab = build(routers)
    if "--yaml" in argv:
        print(yaml.safe_dump(lab.to_dict(), sort_keys=False), end="")
        return 0
    far = subnet(routers, 2)  # b's address
    with lab:  # up on enter, down on exit
        result = lab.node("a").exec(["ping", "-c", "1", "-W", "2", far])
        print(result.stdout, end="")
        ttl = re.search(r"ttl=(\d+)", result.stdout)
        if result.returncode != 0 or ttl is None:
            print(f"a cannot reach b at {far}", file=sys.stderr)
            return 1
        # every router on the way decrements the TTL of b's reply once
        print(f"a reaches b across {64 - int(ttl.group(1))} routers")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
