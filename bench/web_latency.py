"""The live page's update latency and load time, in headless Chromium.

    .venv/bin/vethlab sandbox -- .venv/bin/python bench/web_latency.py [--nodes 500] [--reps 10]

Builds a star of N nodes (each linked to a hub), serves it with `vethlab web`, opens
the page in Debian's chromium through Playwright, and measures:
* load: from page.goto until the page is live and every link is coloured;
* latency: from `ip link set` of a link end (the kernel change itself) until the
  page has that link red, median over the repetitions; and back up.
Run it inside a sandbox: it builds a lab.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--reps", type=int, default=10)
    args = parser.parse_args()
    if not os.environ.get("VETHLAB_SANDBOX"):
        print("run me inside `vethlab sandbox --`: I build a lab", file=sys.stderr)
        return 2
    from playwright.sync_api import sync_playwright

    n = args.nodes
    lines = ["name: webbench", "nodes:", "  hub: {}"] + [f"  h{i}: {{}}" for i in range(n)] + ["links:"]
    for i in range(n):
        lines.append(f"  - endpoints: [hub:e{i}, h{i}:e0]")
    path = os.path.join(tempfile.mkdtemp(), "star.yaml")
    with open(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    vethlab = [sys.executable, "-m", "vethlab"]
    subprocess.run([*vethlab, "up", path], check=True, stdout=subprocess.DEVNULL)
    server = subprocess.Popen([*vethlab, "web", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        url = server.stdout.readline().split()[2]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            start = time.monotonic()
            page.goto(url)
            page.wait_for_selector("#conn.live", timeout=60_000)
            page.wait_for_function("() => [...document.querySelectorAll('g.edge')].every(e => e.dataset.state === 'up')",
                                   timeout=60_000)
            load = time.monotonic() - start
            downs, ups = [], []
            for rep in range(args.reps):
                end = f"e{rep % n}"
                selector = f'g.edge[data-ends~="hub:{end}"]'
                t0 = time.monotonic()
                subprocess.run(["ip", "-n", "hub", "link", "set", end, "down"], check=True)
                try:
                    page.wait_for_selector(selector + '[data-state="admin-down"]', timeout=10_000, state="attached")
                except Exception:
                    print(page.eval_on_selector(selector, "e => [e.id, e.dataset.ends, e.dataset.state]"),
                          page.evaluate("() => document.body.dataset.lastEvent"), file=sys.stderr)
                    raise
                downs.append(time.monotonic() - t0)
                t0 = time.monotonic()
                subprocess.run(["ip", "-n", "hub", "link", "set", end, "up"], check=True)
                page.wait_for_selector(selector + '[data-state="up"]', timeout=10_000)
                ups.append(time.monotonic() - t0)
            # responsiveness: a click on a node opens its panel
            t0 = time.monotonic()
            page.dispatch_event('g.node[data-ident="h7"]', "click")
            page.wait_for_selector("#side table", timeout=10_000)
            click = time.monotonic() - t0
            browser.close()
    finally:
        server.terminate()
        server.wait(10)
        subprocess.run([*vethlab, "down", path], check=True, stdout=subprocess.DEVNULL)
    ms = lambda xs: f"median {statistics.median(xs) * 1000:.0f} ms (min {min(xs) * 1000:.0f}, max {max(xs) * 1000:.0f})"  # noqa: E731
    print(f"nodes {n + 1}, links {n}: page load to live and coloured {load:.2f} s")
    print(f"kernel link down -> page red: {ms(downs)} over {args.reps}")
    print(f"kernel link up -> page green: {ms(ups)} over {args.reps}")
    print(f"click on a node -> its panel with counters: {click * 1000:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
