"""`vethlab graph`: every part of the file is drawn and labelled as it is built.

The .dot is checked by Graphviz itself (`dot -Tjson` parses it and gives back every
vertex and edge with its labels as dot understood them), so an escaping mistake
(a literal `\\n` in a label) or a missing bridge shows up as dot reads it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from helpers import SEED
from vethlab.cli.demo import DOCKER
from vethlab.model import graph
from vethlab.topology import lab_from_text

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz is not installed")


def _parsed(dot_text: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """(vertex name -> label, edges with tail/head names and their labels) as dot reads them."""
    out = subprocess.run(["dot", "-Tjson0"], input=dot_text, capture_output=True, text=True, check=True).stdout
    data = json.loads(out)
    objects = data.get("objects", [])
    names = {i: o["name"] for i, o in enumerate(objects)}
    vertices = {o["name"]: o.get("label", "") for o in objects}
    edges = []
    for e in data.get("edges", []):
        edges.append({"tail": names[e["tail"]], "head": names[e["head"]], "taillabel": e.get("taillabel", ""),
                      "headlabel": e.get("headlabel", ""), "label": e.get("label", "")})
    return vertices, edges


@needs_dot
def test_seed_pair_is_two_nodes_and_one_labelled_link() -> None:
    vertices, edges = _parsed(graph.to_dot(graph.from_spec(lab_from_text(SEED))))
    assert vertices == {"ns1": "ns1", "ns2": "ns2"}
    assert edges == [{"tail": "ns1", "head": "ns2", "taillabel": "vp1\\n192.168.1.1/24",
                      "headlabel": "vp2\\n192.168.1.2/24", "label": ""}]
    # dot's own line break, not an escaped backslash followed by n
    assert "\\\\n" not in graph.to_dot(graph.from_spec(lab_from_text(SEED)))


@needs_dot
def test_docker_network_is_a_bridge_with_its_members_gateway_and_published_port() -> None:
    vertices, edges = _parsed(graph.to_dot(graph.from_spec(lab_from_text(DOCKER))))
    assert vertices == {
        "internet": "internet", "web": "web", "client": "client", "host": "host",
        "net:lan": "network lan\\nbridge vb.docker.lan\\n172.30.0.0/24\\nnat",
    }
    by_pair = {(e["tail"], e["head"]): e for e in edges}
    assert set(by_pair) == {("host", "internet"), ("host", "net:lan"), ("web", "net:lan"), ("client", "net:lan")}
    assert by_pair[("host", "internet")]["taillabel"] == "uplink0\\n203.0.113.1/24"
    assert by_pair[("host", "net:lan")]["label"] == "vb.docker.lan\\n172.30.0.1/24"
    assert by_pair[("web", "net:lan")]["taillabel"] == "eth0\\n172.30.0.2/24"
    assert by_pair[("web", "net:lan")]["label"] == "host:8080 → web:80/tcp"
    assert by_pair[("client", "net:lan")]["taillabel"] == "eth0\\n172.30.0.3/24"


UPLINK_AND_MACVLAN = """\
name: phys
nodes: {a: {}, b: {}}
networks:
  lan:
    uplinks: [enp7s0]
    subnet: 10.1.0.0/24
    members: {a: {ip: 10.1.0.10}}
  wire:
    driver: macvlan
    parent: enp8s0
    subnet: 10.99.0.0/24
    members: {b: {ip: 10.99.0.60}}
"""


@needs_dot
def test_uplinks_and_macvlan_are_drawn_as_the_real_lan() -> None:
    vertices, edges = _parsed(graph.to_dot(graph.from_spec(lab_from_text(UPLINK_AND_MACVLAN))))
    assert vertices["uplink:enp7s0"] == "uplink enp7s0\\n(a real NIC)"
    assert vertices["net:wire"] == "network wire\\nmacvlan on host:enp8s0\\n10.99.0.0/24"
    pairs = {(e["tail"], e["head"]) for e in edges}
    assert ("net:lan", "uplink:enp7s0") in pairs and ("a", "net:lan") in pairs and ("b", "net:wire") in pairs


def test_state_allocation_is_what_is_drawn() -> None:
    """A running lab's picture shows the addresses it has, not a fresh allocation."""
    previous = {"subnet": {"lan": "172.30.7.0/24"}, "address": {"lan": {"web": "172.30.7.9/24"}}}
    pic = graph.from_spec(lab_from_text(DOCKER), previous)
    member = next(e for e in pic.edges if e.a == "web")
    assert member.a_label == ["eth0", "172.30.7.9/24"]


def test_mermaid_has_every_vertex_and_edge() -> None:
    text = graph.to_mermaid(graph.from_spec(lab_from_text(DOCKER)))
    vertex_lines = [line for line in text.splitlines()[1:] if "---" not in line]
    edge_lines = [line for line in text.splitlines() if "---" in line]
    assert len(vertex_lines) == 5 and len(edge_lines) == 4
    labels = {m.group(1): m.group(2) for line in vertex_lines if (m := re.match(r"\s+(n\d+)\W+\"(.*)\"\W*$", line))}
    assert sorted(labels.values()) == sorted(["internet", "web", "client", "host",
                                             "network lan<br/>bridge vb.docker.lan<br/>172.30.0.0/24<br/>nat"])
    web_edge = next(line for line in edge_lines if line.strip().startswith(
        next(k for k, v in labels.items() if v == "web")))
    assert "eth0 172.30.0.2/24" in web_edge and "host:8080 → web:80/tcp" in web_edge


@needs_dot
def test_png_renders(tmp_path) -> None:
    out = tmp_path / "docker.png"
    graph.write(graph.from_spec(lab_from_text(DOCKER)), str(out))
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert width > 200 and height > 200
