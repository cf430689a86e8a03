"""The pages' translations: gettext catalogs, one `.po` file per language, read as they are.

Layout (the gettext one): `<folder>/<language>/LC_MESSAGES/baton.po`, with `<language>` a
gettext locale name (`fr`, `de`, `pt_BR`). The built-in catalogs live beside this module; a
theme (`--theme-dir`) may add a `locale/` folder of the same layout, whose entries come before
the built-in ones (and whose `en` catalog may reword the English pages).

Why the `.po` source is read at run time rather than a compiled `.mo`: the source is the only
file there is, so a compiled file can never be stale, a theme author edits a text file and
restarts without a gettext tool chain, and the server needs no Babel. The reading is small
(`read_po`): each entry is turned into the very bytes of a `.mo` file (`mo_bytes`) and handed
to the standard library's `gettext.GNUTranslations`, which does the lookups, the contexts and
the plural rules (`Plural-Forms`) as gettext does. A compiled `baton.mo` beside a `.po` is
ignored; one alone is read as it is.

Entries marked `#, fuzzy` and untranslated ones are left out: the English words show instead
of a guess or an empty string.
"""

from __future__ import annotations

import functools
import gettext
import io
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).parent  # the built-in catalogs
DOMAIN = "baton"
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "a": "\a", "b": "\b"}
_KEYWORD = re.compile(r"^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(\".*\")\s*$")


class CatalogError(ValueError):
    """A `.po` file that cannot be read: where and why."""


@dataclass
class Entry:
    """One message of a `.po` file."""

    msgid: str = ""
    msgid_plural: str | None = None
    msgctxt: str | None = None
    msgstr: dict[int, str] = field(default_factory=dict)
    fuzzy: bool = False

    @property
    def translated(self) -> bool:
        return bool(self.msgstr) and all(self.msgstr.values())


def _unquote(literal: str, where: str) -> str:
    if len(literal) < 2 or literal[0] != '"' or literal[-1] != '"':
        raise CatalogError(f"{where}: expected a quoted string")
    body, out, i = literal[1:-1], [], 0
    while i < len(body):
        char = body[i]
        if char == "\\":
            if i + 1 >= len(body) or body[i + 1] not in _ESCAPES:
                raise CatalogError(f"{where}: unknown escape in {literal}")
            out.append(_ESCAPES[body[i + 1]])
            i += 2
        elif char == '"':
            raise CatalogError(f"{where}: unescaped quote in {literal}")
        else:
            out.append(char)
            i += 1
    return "".join(out)


def read_po(text: str, name: str = "<po>") -> list[Entry]:
    """The entries of a `.po` file's text (obsolete `#~` entries skipped). Raises
    `CatalogError` on what gettext's `msgfmt` would refuse to read."""
    entries: list[Entry] = []
    entry, fuzzy = Entry(), False
    target: tuple[str, int] | None = None  # the field a continued string adds to
    started = False

    def finish() -> None:
        nonlocal entry, fuzzy, started, target
        if started:
            entry.fuzzy = fuzzy
            entries.append(entry)
        entry, fuzzy, started, target = Entry(), False, False, None

    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = f"{name}:{number}"
        if not line:
            finish()
            continue
        if line.startswith("#"):
            if started and target is not None and target[0] == "msgstr":
                finish()  # a comment after a msgstr begins the next entry
            if line.startswith("#,") and "fuzzy" in {f.strip() for f in line[2:].split(",")}:
                fuzzy = True
            continue
        if line.startswith('"'):
            if target is None:
                raise CatalogError(f"{where}: a string continues nothing")
            _append(entry, target, _unquote(line, where))
            continue
        found = _KEYWORD.match(line)
        if found is None:
            raise CatalogError(f"{where}: cannot read {line[:40]!r}")
        keyword, index, literal = found.group(1), found.group(2), found.group(3)
        if keyword in ("msgctxt", "msgid") and started and target and target[0] == "msgstr":
            finish()
        started = True
        value = _unquote(literal, where)
        if keyword.startswith("msgstr"):
            target = ("msgstr", int(index) if index is not None else 0)
        else:
            target = (keyword, 0)
        _append(entry, target, value, first=True)
    finish()
    return entries


def _append(entry: Entry, target: tuple[str, int], value: str, first: bool = False) -> None:
    kind, index = target
    if kind == "msgstr":
        entry.msgstr[index] = ("" if first else entry.msgstr.get(index, "")) + value
    elif kind == "msgid":
        entry.msgid = ("" if first else entry.msgid) + value
    elif kind == "msgid_plural":
        entry.msgid_plural = ("" if first else entry.msgid_plural or "") + value
    else:
        entry.msgctxt = ("" if first else entry.msgctxt or "") + value


def mo_bytes(entries: list[Entry]) -> bytes:
    """A `.mo` file (GNU gettext's format, little-endian, no hash table) of the translated,
    non-fuzzy entries, and of the header (`msgid ""`) always."""
    pairs: dict[bytes, bytes] = {b"": _utf8_header("")}
    for entry in entries:
        header = entry.msgid == "" and entry.msgctxt is None
        if not header and (entry.fuzzy or not entry.translated):
            continue
        key = entry.msgid
        if entry.msgid_plural is not None:
            key += "\0" + entry.msgid_plural
        if entry.msgctxt is not None:
            key = entry.msgctxt + "\x04" + key
        value = "\0".join(entry.msgstr[i] for i in sorted(entry.msgstr))
        pairs[key.encode()] = _utf8_header(value) if header else value.encode()
    keys = sorted(pairs)
    count = len(keys)
    originals_at = 7 * 4
    translations_at = originals_at + count * 8
    data_at = translations_at + count * 8
    tables, blob = [b"", b""], b""
    for column, strings in enumerate((keys, [pairs[k] for k in keys])):
        for string in strings:
            tables[column] += struct.pack("<2I", len(string), data_at + len(blob))
            blob += string + b"\0"
    head = struct.pack("<7I", 0x950412DE, 0, count, originals_at, translations_at, 0, data_at)
    return head + tables[0] + tables[1] + blob


@functools.lru_cache(maxsize=64)
def _compiled(path: Path, _mtime: int) -> bytes:
    """The `.mo` bytes of a catalog file, read once per version of the file (every app made in
    one process, as the tests make hundreds, shares the reading)."""
    if path.suffix == ".po":
        return mo_bytes(read_po(path.read_text(encoding="utf-8"), str(path)))
    return path.read_bytes()


def _utf8_header(header: str) -> bytes:
    """The header entry saying UTF-8, the encoding the `.po` text was read in and the bytes
    are written in, whatever charset the file named (gettext decodes by it)."""
    lines = [
        line for line in header.split("\n") if line and not line.lower().startswith("content-type:")
    ]
    lines.append("Content-Type: text/plain; charset=UTF-8")
    return ("\n".join(lines) + "\n").encode()


def read_catalog(path: Path) -> gettext.GNUTranslations:
    """The translations of a `.po` (or, alone, a `.mo`) file."""
    try:
        data = _compiled(path, path.stat().st_mtime_ns)
        return gettext.GNUTranslations(io.BytesIO(data))
    except CatalogError:
        raise
    except (OSError, ValueError, SyntaxError) as exc:  # not UTF-8, not a .mo, a bad plural
        raise CatalogError(f"{path}: {exc}") from exc


def catalog_files(folder: Path) -> Iterator[tuple[str, Path]]:
    """(language tag, file) of each catalog under `folder` (`fr`, `pt-BR`: BCP 47 spelling)."""
    if not folder.is_dir():
        return
    for language in sorted(folder.iterdir()):
        messages = language / "LC_MESSAGES"
        for candidate in (messages / f"{DOMAIN}.po", messages / f"{DOMAIN}.mo"):
            if candidate.is_file():
                yield language.name.replace("_", "-"), candidate
                break


def load_catalogs(*folders: Path) -> dict[str, gettext.NullTranslations]:
    """Each language's translations, keyed by lower-case tag; a folder named later comes first
    (a theme's entries over the built-in ones, which remain the fallback)."""
    found: dict[str, gettext.NullTranslations] = {}
    for folder in folders:
        for tag, path in catalog_files(folder):
            catalog = read_catalog(path)
            earlier = found.get(tag.lower())
            if earlier is not None:
                catalog.add_fallback(earlier)
            found[tag.lower()] = catalog
    return found


def language_names(*folders: Path) -> dict[str, str]:
    """Lower-case tag -> the tag as spelled by its folder (`pt-br` -> `pt-BR`)."""
    return {tag.lower(): tag for folder in folders for tag, _ in catalog_files(folder)}
