"""Write docs/recipes.md from search_spaces/references.py (``--check``: exit 1 if stale)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "recipes.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(DOC.parents[1]))
    from search_spaces.references import render_markdown

    text = render_markdown()
    if args.check:
        stale = not DOC.is_file() or DOC.read_text() != text
        print(f"{DOC}: {'stale, run scripts/write_recipes_doc.py' if stale else 'up to date'}")
        return int(stale)
    DOC.write_text(text)
    print(f"wrote {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
