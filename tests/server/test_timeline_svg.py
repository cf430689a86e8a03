"""The SVG of a timeline: well-formed, one bar per token, the leeway shaded, the reuse in red,
every text escaped, and nothing that the pages' Content Security Policy would refuse."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

from baton.server.admin.timeline_svg import REUSE, render
from tests.core.test_timeline import demo_family

NS = {"s": "http://www.w3.org/2000/svg"}


def parsed(svg: str) -> ET.Element:
    return ET.fromstring(svg)


def by_class(root: ET.Element, tag: str, cls: str) -> list[ET.Element]:
    return [e for e in root.iter(f"{{{NS['s']}}}{tag}") if e.get("class") == cls]


def test_bars_leeways_exchanges_retries_and_the_red_reuse() -> None:
    root = parsed(render(demo_family().timeline()))
    assert len(by_class(root, "rect", "bar-refresh")) == 4
    assert len(by_class(root, "rect", "bar-access")) == 4
    leeways = by_class(root, "rect", "leeway")
    assert len(leeways) == 3 and all(r.get("fill") == "url(#leeway-hatch)" for r in leeways)
    assert root.find(".//s:pattern[@id='leeway-hatch']", NS) is not None
    assert len(by_class(root, "circle", "exchange")) == 3
    assert len(by_class(root, "path", "retry")) == 1
    # The reuse: a red cross on gen 1's row, and a red line through the family.
    (cross,) = by_class(root, "g", "reuse")
    assert cross.find("s:path", NS).get("stroke") == REUSE  # type: ignore[union-attr]
    (line,) = by_class(root, "g", "family-reuse")
    assert line.find("s:line", NS).get("stroke") == REUSE  # type: ignore[union-attr]
    assert "grant revoked: reuse detected" in "".join(line.itertext())


def test_hover_titles_say_when_and_why() -> None:
    root = parsed(render(demo_family().timeline()))
    gen0 = by_class(root, "rect", "bar-refresh")[0]
    title = gen0.findtext("s:title", namespaces=NS) or ""
    assert title.splitlines() == [
        "gen 0 refresh token",
        "issued 2023-11-14 22:13:20 UTC",
        "died 2023-11-14 22:43:20 UTC (after 30 min): leeway ended after the exchange",
    ]
    retry = by_class(root, "path", "retry")[0].findtext("s:title", namespaces=NS) or ""
    assert retry.startswith("gen 1 retried inside the leeway at 2023-11-14 22:54:20 UTC")


def test_every_text_is_escaped_and_nothing_needs_script_or_inline_style() -> None:
    family = demo_family()
    hostile = replace(family.timeline().grant, id='grt_"><script>alert(1)</script>')
    drawn = replace(family.timeline(), grant=hostile)
    svg = render(drawn)
    parsed(svg)  # still well-formed
    assert "<script" not in svg and "style=" not in svg and " on" not in svg.replace(" one", "")
    assert "&lt;script&gt;" in svg


def test_a_bar_living_past_the_right_edge_ends_in_an_arrow() -> None:
    family = demo_family()
    family.revoked = None  # the replay never happened: gen 3 lives on for months
    family.events = [e for e in family.events if e.kind != "refresh_token_reuse"]
    root = parsed(render(family.timeline()))
    assert len(by_class(root, "path", "continues")) == 1
    assert not by_class(root, "g", "family-reuse")
