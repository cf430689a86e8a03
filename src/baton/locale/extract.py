"""The messages of the pages, gathered from their sources, and the catalogs checked against
them: what `python -m baton.locale` and the catalog-completeness test use.

Messages come from the templates (`_()`, `gettext()`, `ngettext()`, `{% trans %}`, read by
Jinja's own extractor, so no Babel is needed) and from Python source (`N_("...")` and
`N_plural("one", "many")` calls, read with `ast`): the server's, and the core rules' that word
a message for a page (`baton.core.messages`).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from jinja2.ext import babel_extract

from baton.locale import Entry, read_po

BATON = Path(__file__).parents[1]  # the baton package
TEMPLATES = BATON / "server" / "templates"
SOURCES = (BATON / "server", BATON / "core")
_KEYWORDS = ("_", "gettext", "ngettext", "pgettext", "npgettext")
_PLACEHOLDER = re.compile(r"%\((\w+)\)[sdif]")


@dataclass(frozen=True, order=True)
class Message:
    msgid: str
    msgid_plural: str | None = None
    msgctxt: str | None = None


def template_messages(folder: Path = TEMPLATES) -> dict[Message, list[str]]:
    """Each message of the templates under `folder`, with where it is said (`file:line`). The
    admin console's (`admin/`) are left out: the console is for operators and speaks English; a
    theme's catalog may still word its messages."""
    found: dict[Message, list[str]] = {}
    options = {"trimmed": "true", "extensions": "jinja2.ext.i18n"}
    for path in sorted(folder.rglob("*.html")):
        if path.relative_to(folder).parts[0] == "admin":
            continue
        with path.open("rb") as source:
            for line, function, text, _ in babel_extract(source, _KEYWORDS, [], options):
                message = _message(function, text) if text is not None else None
                if message is not None:
                    where = f"{path.relative_to(BATON.parent).as_posix()}:{line}"
                    found.setdefault(message, []).append(where)
    return found


def _message(function: str, text: str | tuple[str | None, ...]) -> Message | None:
    strings = [text] if isinstance(text, str) else list(text)
    if function in ("pgettext", "npgettext"):
        context, strings = strings[0], strings[1:]
    else:
        context = None
    if not strings or not isinstance(strings[0], str):
        return None  # a variable, not a literal: not a message of the catalog
    plural = strings[1] if function.startswith(("n", "np")) and len(strings) > 1 else None
    return Message(strings[0], plural, context)


def python_messages(folders: Iterable[Path] = SOURCES) -> dict[Message, list[str]]:
    """Each `N_("...")` and `N_plural("one", "many")` of the Python files under `folders`."""
    found: dict[Message, list[str]] = {}
    for path in sorted(p for folder in folders for p in folder.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
                continue
            literals = [a.value for a in node.args if isinstance(a, ast.Constant)]
            if not all(isinstance(v, str) for v in literals):
                continue
            message: Message | None = None
            if node.func.id == "N_" and len(literals) == 1:
                message = Message(str(literals[0]))
            elif node.func.id == "N_plural" and len(literals) == 2:
                message = Message(str(literals[0]), str(literals[1]))
            if message is not None:
                where = f"{path.relative_to(BATON.parent).as_posix()}:{node.lineno}"
                found.setdefault(message, []).append(where)
    return found


def all_messages() -> dict[Message, list[str]]:
    found = template_messages()
    for message, places in python_messages().items():
        found.setdefault(message, []).extend(places)
    return found


def placeholders(text: str) -> set[str]:
    return set(_PLACEHOLDER.findall(text))


def problems(po: Path, messages: Iterable[Message]) -> Iterator[str]:
    """What the catalog `po` lacks for `messages`: a missing, untranslated or fuzzy entry, or a
    translation whose `%(name)s` placeholders differ from its message's."""
    entries: dict[Message, Entry] = {
        Message(e.msgid, e.msgid_plural, e.msgctxt): e
        for e in read_po(po.read_text(encoding="utf-8"), str(po))
        if e.msgid
    }
    for message in sorted(messages):
        entry = entries.get(message)
        if entry is None:
            yield f"{po}: missing {message.msgid!r}"
        elif entry.fuzzy or not entry.translated:
            yield f"{po}: untranslated {message.msgid!r}"
        else:
            wanted = placeholders(message.msgid) | placeholders(message.msgid_plural or "")
            for translation in entry.msgstr.values():
                if placeholders(translation) - wanted or (
                    message.msgid_plural is None and placeholders(translation) != wanted
                ):
                    yield f"{po}: placeholders of {message.msgid!r} differ in {translation!r}"


def _quote(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def entry_text(message: Message, places: Iterable[str], msgstr: Iterable[str] = ("",)) -> str:
    """One `.po` entry for `message`, with empty translations unless given."""
    lines = [f"#: {' '.join(places)}"]
    if any("%(" in s for s in (message.msgid, message.msgid_plural or "")):
        lines.append("#, python-format")
    if message.msgctxt is not None:
        lines.append(f"msgctxt {_quote(message.msgctxt)}")
    lines.append(f"msgid {_quote(message.msgid)}")
    strings = list(msgstr)
    if message.msgid_plural is not None:
        lines.append(f"msgid_plural {_quote(message.msgid_plural)}")
        strings = strings if len(strings) > 1 else ["", ""]
        lines += [f"msgstr[{i}] {_quote(s)}" for i, s in enumerate(strings)]
    else:
        lines.append(f"msgstr {_quote(strings[0])}")
    return "\n".join(lines) + "\n"


POT_HEADER = """# The messages of Baton's pages. Made by `python -m baton.locale pot`: do not edit.
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Content-Transfer-Encoding: 8bit\\n"

"""


def pot() -> str:
    """The template of a catalog: every message, untranslated."""
    found = all_messages()
    return POT_HEADER + "\n".join(entry_text(m, found[m]) for m in sorted(found))


def missing_entries(po: Path) -> str:
    """`.po` entries (untranslated) for the messages `po` has no entry for."""
    have = {
        Message(e.msgid, e.msgid_plural, e.msgctxt)
        for e in read_po(po.read_text(encoding="utf-8"), str(po))
    }
    found = all_messages()
    return "\n".join(entry_text(m, found[m]) for m in sorted(found) if m not in have)
