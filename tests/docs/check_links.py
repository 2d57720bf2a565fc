"""Checks the internal links of glia's Markdown: the book under docs/ and README.md.

Every relative link must name a file or folder that exists, and every `#anchor` (in the same
page or another) must be the id of one of that page's headings, computed as mdBook computes it
(lowercase, whitespace to `-`, other punctuation dropped, `-1`, `-2`, ... for repeats). A page
of the book may not link outside docs/: mdBook copies only docs/ into the built book, so such a
link would be dead there. External links (`http:`, `https:`, `mailto:`, ...) are not checked.

With `--book-html DIR` (the built book) it also checks that the heading ids it computes for
each page are exactly those mdBook wrote into the page's HTML, so the rule above cannot drift
from mdBook's.

Usage: check_links.py [--book-html DIR] [PATH ...]   (default: docs/ and README.md)
Exit status 1 and one line per broken link (file:line: link: why) if any link is broken.
"""

from __future__ import annotations

import argparse
import re
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
BOOK = ROOT / "docs"

FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})")
CLOSING_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})[ \t]*$")
ATX_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
SETEXT_UNDERLINE = re.compile(r"^ {0,3}(=+|-+)[ \t]*$")
CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)")
INLINE_LINK = re.compile(r"\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
INLINE_MARKUP = [
    (re.compile(r"!?\[([^\]]*)\]\([^)]*\)"), r"\1"),  # a link or image: its text
    (re.compile(r"<[^>]+>"), ""),  # inline HTML tags
    (re.compile(r"(?<!\w)_+(.+?)_+(?!\w)"), r"\1"),  # _emphasis_
    (re.compile(r"\*+"), ""),  # *emphasis* and **strong**
]


@dataclass(frozen=True)
class Link:
    """A link as written in a Markdown file."""

    file: Path
    line: int
    target: str


@dataclass(frozen=True)
class Broken:
    """A link that does not resolve, and why."""

    link: Link
    why: str

    def __str__(self) -> str:
        return f"{display(self.link.file)}:{self.link.line}: broken link `{self.link.target}`: {self.why}"


def display(path: Path) -> str:
    """The path relative to the repository, as messages name files."""
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def outside_fences(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    lines: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        if fence is None:
            opening = FENCE.match(line)
            if opening:
                fence = opening.group(1)
            else:
                lines.append((number, line))
            continue
        closing = CLOSING_FENCE.match(line)
        if closing and closing.group(1)[0] == fence[0] and len(closing.group(1)) >= len(fence):
            fence = None
    return lines


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with code spans blanked out."""
    return [(n, CODE_SPAN.sub(lambda m: " " * len(m.group(0)), line)) for n, line in outside_fences(text)]


def links_in(path: Path) -> list[Link]:
    """Every link and image target written in the file, outside code."""
    found: list[Link] = []
    for number, line in prose_lines(path.read_text(encoding="utf-8")):
        targets = [m.group(1) for m in INLINE_LINK.finditer(line)]
        definition = REFERENCE_DEFINITION.match(line)
        if definition:
            targets.append(definition.group(1))
        found.extend(Link(path, number, target.strip("<>")) for target in targets)
    return found


def heading_texts(text: str) -> list[str]:
    """The text of every heading, ATX (`# Title`) or setext (`Title` over `===`), in order."""
    headings: list[str] = []
    previous: str | None = None
    for _, line in outside_fences(text):
        atx = ATX_HEADING.match(line)
        if atx:
            headings.append(atx.group(2) or "")
            previous = None
            continue
        if previous and SETEXT_UNDERLINE.match(line) and is_paragraph(previous):
            headings.append(previous.strip())
            previous = None
            continue
        previous = line if line.strip() else None
    return headings


def is_paragraph(line: str) -> bool:
    """Whether a line can be the text of a setext heading (not a list item, table, quote, ...)."""
    stripped = line.strip()
    return not re.match(r"([-*+>|]|\d+[.)])(\s|$)", stripped) and not stripped.startswith("|")


def anchor_of(heading: str) -> str:
    """The id mdBook gives a heading: its text without markup, lowercased (ASCII letters),
    whitespace turned into `-`, and every character but letters, digits, `_` and `-` dropped."""
    text = CODE_SPAN.sub(lambda m: m.group(2).strip(), heading)
    for pattern, replacement in INLINE_MARKUP:
        text = pattern.sub(replacement, text)
    out: list[str] = []
    for char in text.strip():
        if char.isalnum() or char in "_-":
            out.append(char.lower() if char.isascii() else char)
        elif char.isspace():
            out.append("-")
    return "".join(out)


def anchors_of(path: Path) -> list[str]:
    """The ids of a page's headings, repeats numbered as mdBook numbers them."""
    seen: dict[str, int] = {}
    ids: list[str] = []
    for heading in heading_texts(path.read_text(encoding="utf-8")):
        base = anchor_of(heading)
        count = seen.get(base, 0)
        ids.append(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    return ids


class Checker:
    """Resolves links, reading each target page's headings once."""

    def __init__(self) -> None:
        self._anchors: dict[Path, set[str]] = {}

    def anchors(self, page: Path) -> set[str]:
        if page not in self._anchors:
            self._anchors[page] = set(anchors_of(page))
        return self._anchors[page]

    def check(self, link: Link) -> Broken | None:
        target = link.target
        if not target or SCHEME.match(target):
            return None
        path_part, _, fragment = target.partition("#")
        if path_part.startswith("/"):
            return Broken(link, "an absolute path; write it relative to the file")
        page = (link.file.parent / unquote(path_part)).resolve() if path_part else link.file
        if not page.exists():
            return Broken(link, f"{display(page)} does not exist")
        if is_within(link.file, BOOK) and not is_within(page, BOOK):
            return Broken(link, "a page of the book links outside docs/, which the built book does not contain")
        if not fragment:
            return None
        if page.is_dir() or page.suffix != ".md":
            return Broken(link, f"an anchor into {display(page)}, which is not a Markdown page")
        anchor = unquote(fragment)
        if anchor not in self.anchors(page):
            near = sorted(a for a in self.anchors(page) if anchor[:4] in a)[:5]
            hint = f" (headings there include: {', '.join(near)})" if near else ""
            return Broken(link, f"no heading of {display(page)} has the anchor #{anchor}{hint}")
        return None


def is_within(path: Path, folder: Path) -> bool:
    return path.resolve().is_relative_to(folder.resolve())


class HeadingIds(HTMLParser):
    """Collects the `id` of every h1-h6 element of an HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            for name, value in attrs:
                if name == "id" and value:
                    self.ids.append(value)


def html_mismatches(book_html: Path) -> list[str]:
    """Pages whose heading ids computed here differ from those mdBook wrote."""
    problems: list[str] = []
    for page in sorted(BOOK.glob("*.md")):
        html = book_html / page.with_suffix(".html").name
        if page.name == "SUMMARY.md" or not html.exists():
            continue
        parser = HeadingIds()
        parser.feed(html.read_text(encoding="utf-8"))
        ours, theirs = anchors_of(page), parser.ids
        if ours != theirs:
            only_ours = sorted(set(ours) - set(theirs))
            only_theirs = sorted(set(theirs) - set(ours))
            problems.append(
                f"{display(page)}: heading ids differ from mdBook's in {display(html)}: "
                f"computed here only {only_ours}, mdBook only {only_theirs}"
            )
    return problems


def markdown_files(paths: list[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted(path.rglob("*.md")))
        elif path.exists():
            files.append(path)
        else:
            raise SystemExit(f"error: {path} does not exist")
    return [f.resolve() for f in files]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path, help="Markdown files or folders (default: docs/ and README.md)")
    parser.add_argument("--book-html", type=Path, help="the built book: check heading ids against mdBook's")
    args = parser.parse_args(argv)
    files = markdown_files(args.paths or [BOOK, ROOT / "README.md"])
    checker = Checker()
    links = [link for file in files for link in links_in(file)]
    broken = [b for b in (checker.check(link) for link in links) if b is not None]
    for problem in broken:
        print(problem, file=sys.stderr)
    mismatches = html_mismatches(args.book_html) if args.book_html else []
    for problem in mismatches:
        print(problem, file=sys.stderr)
    if broken or mismatches:
        print(f"{len(broken)} broken link(s) of {len(links)} in {len(files)} files", file=sys.stderr)
        return 1
    print(f"{len(links)} links in {len(files)} files: none broken")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
