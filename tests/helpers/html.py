"""Reading the HTML report's pages in tests: their elements, attributes and text, in order."""
from __future__ import annotations

from html.parser import HTMLParser


class Page(HTMLParser):
    """The elements of a page (tag, attributes, the text inside) and all its text, in order."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.elements: list[tuple[str, dict, list[str]]] = []
        self._open: list[tuple[str, dict, list[str]]] = []
        self.text: list[str] = []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        element = (tag, dict(attrs), [])
        self.elements.append(element)
        if tag not in ("br", "meta"):
            self._open.append(element)

    def handle_endtag(self, tag):
        while self._open:
            if self._open.pop()[0] == tag:
                break

    def handle_data(self, data):
        self.text.append(data)
        for _, _, inside in self._open:
            inside.append(data)

    def find(self, tag: str, css: str | None = None, **attrs) -> list[tuple[dict, str]]:
        """(attributes, text) of each `tag` element with class `css` and the given attributes."""
        return [(a, "".join(inside)) for t, a, inside in self.elements
                if t == tag and (css is None or css in (a.get("class") or "").split())
                and all(a.get(k.replace("_", "-")) == v for k, v in attrs.items())]
