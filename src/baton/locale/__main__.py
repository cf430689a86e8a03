"""`python -m baton.locale pot | check | update LANG [...]`: the catalogs' upkeep.

- `pot`: prints the template of a catalog (every message of the pages, untranslated);
- `check [FOLDER]`: every catalog under FOLDER (default: the built-in ones) translates every
  message, with the same placeholders; exit status 1 and one line per problem otherwise;
- `update LANG...`: appends to the built-in catalog of each LANG the messages it lacks, with
  empty translations, for a translator to fill in.
"""

from __future__ import annotations

import sys
from pathlib import Path

from baton.locale import DOMAIN, HERE, catalog_files
from baton.locale.extract import all_messages, missing_entries, pot, problems


def main(argv: list[str]) -> int:
    if argv[:1] == ["pot"]:
        sys.stdout.write(pot())
        return 0
    if argv[:1] == ["check"]:
        folder = Path(argv[1]) if len(argv) > 1 else HERE
        messages = list(all_messages())
        found = [
            p
            for _, po in catalog_files(folder)
            if po.suffix == ".po"
            for p in problems(po, messages)
        ]
        for problem in found:
            print(problem)
        return 1 if found else 0
    if argv[:1] == ["update"] and len(argv) > 1:
        for language in argv[1:]:
            po = HERE / language / "LC_MESSAGES" / f"{DOMAIN}.po"
            if not po.is_file():
                print(f"no catalog {po}: copy `python -m baton.locale pot` there first")
                return 1
            added = missing_entries(po)
            if added:
                with po.open("a", encoding="utf-8") as out:
                    out.write("\n" + added)
            print(f"{po}: {added.count('msgid ')} message(s) added")
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
