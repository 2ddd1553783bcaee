"""Blocks of a generated document that another command owns, between marker comments:

    <!-- NAME:start -->
    ...
    <!-- NAME:end -->

A command that writes a whole document keeps the blocks it does not write (`kept_blocks`); a
command that writes one block replaces only that block (`with_block`)."""

from __future__ import annotations

import re
from pathlib import Path

BLOCK = re.compile(r"<!-- (?P<name>[\w-]+):start -->.*?<!-- (?P=name):end -->", re.S)


def block(name: str, text: str) -> str:
    """`text` between NAME's marker comments."""
    return f"<!-- {name}:start -->\n{text.strip()}\n<!-- {name}:end -->"


def with_block(document: str, name: str, text: str) -> str:
    """`document` with NAME's block holding `text`: replaced where it stands, else appended."""
    pattern = rf"<!-- {re.escape(name)}:start -->.*?<!-- {re.escape(name)}:end -->"
    new = block(name, text)
    updated, count = re.subn(pattern, lambda _: new, document, flags=re.S)
    if count:
        return updated
    if not document.strip():
        return new + "\n"
    return document.rstrip("\n") + "\n\n" + new + "\n"


def kept_blocks(path: Path, new_document: str) -> str:
    """`new_document` with the blocks of the file at `path` that it lacks appended, so that
    rewriting a document does not erase what other commands put in it."""
    if not path.exists():
        return new_document
    own = {m.group("name") for m in BLOCK.finditer(new_document)}
    kept = [m.group(0) for m in BLOCK.finditer(path.read_text()) if m.group("name") not in own]
    if not kept:
        return new_document
    return new_document.rstrip("\n") + "\n\n" + "\n\n".join(kept) + "\n"
