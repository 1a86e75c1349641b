"""The live page (`vethlab web`), driven in Debian's headless Chromium by Playwright,
against real labs in the test's sandbox.

Screenshots of the pages are written to $VETHLAB_SCREENSHOTS when it is set
(docs/img/ holds the committed ones)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpers import SEED, vethlab

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="Debian's chromium is not installed")
sync_api = pytest.importorskip("playwright.sync_api")

DOCKERISH = """\
name: docker
nodes:
  internet: {}
  web: {}
  client: {}
links:
  - endpoints: [host:uplink0, internet:eth0]
    addresses: [203.0.113.1/24, 203.0.113.2/24]
networks:
  lan:
    nat: true
    members:
      web: {publish: ["8080:80/tcp"]}
      client: {}
"""


@pytest.fixture
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu"])
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def serve() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(lab: str) -> tuple[str, str]:
        proc = subprocess.Popen([sys.executable, "-m", "vethlab", "web", "--lab", lab, "--port", "0"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("vethlab web: http://127.0.0.1:"), line + proc.stderr.read() if proc.stderr else ""
        url = line.split()[2]
        return url, url.split("token=")[1]

    yield start
    for proc in started:
        proc.terminate()
        proc.wait(10)


def _up(tmp_path: Any, text: str, name: str) -> None:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    vethlab("up", str(path), check=True)


def _shot(page: Any, name: str) -> None:
    target = os.environ.get("VETHLAB_SCREENSHOTS")
    if target:
        page.screenshot(path=os.path.join(target, name), full_page=True)


def _open(browser: Any, url: str) -> Any:
    page = browser.new_page(viewport={"width": 1200, "height": 700})
    page.goto(url)
    page.wait_for_selector("#conn.live", timeout=10_000)
    page.wait_for_function("() => document.querySelectorAll('g.edge[data-state=\"up\"]').length > 0", timeout=10_000)
    return page


def _admin_up(node: str, ifname: str) -> bool:
    data = json.loads(subprocess.run(["ip", "-j", "-n", node, "link", "show", ifname], capture_output=True,
                                     text=True, check=True).stdout)
    return "UP" in data[0]["flags"]


def test_seed_page_shows_every_node_and_link_and_follows_the_cli(tmp_path, browser, serve) -> None:
    _up(tmp_path, SEED, "seed")
    url, _token = serve("seed")
    page = _open(browser, url)
    assert sorted(page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.ident)")) == ["ns1", "ns2"]
    edges = page.eval_on_selector_all("g.edge", "els => els.map(e => [e.dataset.ends, e.dataset.state])")
    assert edges == [["ns1:vp1 ns2:vp2", "up"]]
    text = page.inner_text("#graph")
    assert "192.168.1.1/24" in text and "192.168.1.2/24" in text
    _shot(page, "web-seed.png")
    # a fault from the CLI reaches the page by the event stream, not by polling
    start = time.monotonic()
    vethlab("link", "down", "ns1:vp1", check=True)
    page.wait_for_selector('g.edge[data-ends~="ns1:vp1"][data-state="admin-down"]', timeout=5_000)
    latency = time.monotonic() - start
    print(f"CLI link down -> page red: {latency * 1000:.0f} ms (includes the CLI's own run)")
    vethlab("link", "up", "ns1:vp1", check=True)
    page.wait_for_selector('g.edge[data-ends~="ns1:vp1"][data-state="up"]', timeout=5_000)


def test_buttons_act_with_the_token_and_are_refused_without(tmp_path, browser, serve) -> None:
    _up(tmp_path, SEED, "seed")
    url, _token = serve("seed")
    anonymous = _open(browser, url.split("?")[0])
    anonymous.dispatch_event("g.edge", "click")
    anonymous.click('button[data-action="link-down"]')
    anonymous.wait_for_selector('#message[data-status="403"]', timeout=5_000)
    assert "refused" in anonymous.inner_text("#message")
    assert _admin_up("ns1", "vp1"), "a refused action changed nothing"

    page = _open(browser, url)
    page.dispatch_event("g.edge", "click")
    page.wait_for_selector("#side table")
    page.click('button[data-action="link-down"]')
    page.wait_for_selector('#message[data-status="200"]', timeout=10_000)
    assert not _admin_up("ns1", "vp1")
    page.wait_for_selector('g.edge[data-state="admin-down"]', timeout=5_000)
    page.click('button[data-action="link-up"]')
    page.wait_for_function("() => document.querySelector('g.edge').dataset.state === 'up'", timeout=10_000)
    assert _admin_up("ns1", "vp1")


def test_docker_style_lab_shows_bridge_members_and_host(tmp_path, browser, serve) -> None:
    _up(tmp_path, DOCKERISH, "docker")
    url, _token = serve("docker")
    page = _open(browser, url)
    assert sorted(page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.ident)")) == \
        ["client", "host", "internet", "net:lan", "web"]
    page.wait_for_function("() => [...document.querySelectorAll('g.edge')].every(e => e.dataset.state === 'up'"
                           " || (e.dataset.state === 'static' && e.dataset.ends === ''))", timeout=10_000)
    ends = sorted(page.eval_on_selector_all("g.edge", "els => els.map(e => e.dataset.ends.split(' ')[0])"))
    assert ends == ["", "client:eth0", "host:uplink0", "web:eth0"]  # "": host -- bridge, coloured by its ports
    assert "host:8080 → web:80/tcp" in page.inner_text("#graph")
    page.dispatch_event('g.node[data-ident="web"]', "click")
    page.wait_for_selector("#side table")
    assert "web:eth0" in page.inner_text("#side")
    _shot(page, "web-docker.png")


def test_static_page_is_self_contained(tmp_path, browser) -> None:
    lab = tmp_path / "docker.yaml"
    lab.write_text(DOCKERISH)
    out = tmp_path / "lab.html"
    vethlab("graph", str(lab), "-o", str(out), check=True)
    page = browser.new_page()
    fetched: list[str] = []
    page.on("request", lambda r: fetched.append(r.url))
    page.goto(out.as_uri())
    assert fetched == [out.as_uri()], "a static page loads nothing else"
    assert sorted(page.eval_on_selector_all("g.node", "els => els.map(e => e.dataset.ident)")) == \
        ["client", "host", "internet", "net:lan", "web"]
    assert page.inner_text("#conn") == "static"


def test_foreign_host_names_are_refused(tmp_path, serve) -> None:
    """A DNS-rebinding page (Host: evil.example pointing at 127.0.0.1) reads nothing."""
    _up(tmp_path, SEED, "seed")
    url, _token = serve("seed")
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)

    def get(host: str) -> int:
        conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=5)
        try:
            conn.request("GET", parts.path + "/status", headers={"Host": host})
            return conn.getresponse().status
        finally:
            conn.close()

    assert get("evil.example") == 403
    assert get(f"evil.example:{parts.port}") == 403
    assert get(f"127.0.0.1:{parts.port}") == 200 and get(f"localhost:{parts.port}") == 200
