#!/usr/bin/env python3
"""vs_err_set/vs_err_sys take a positive errno (src/util/util.h): no call in src/ or tests/ passes a negated
E* constant or errno, nor do the wrappers that hand their code to them (qmp__kill, the migration parser's fail)."""
import pathlib
import re
import sys

CALL = re.compile(r"\b(vs_err_set|vs_err_sys|qmp__kill|fail(?=\(p, e,))\s*\(([^;]*?)\)", re.S)
NEG = re.compile(r",\s*-\s*(E[A-Z0-9]+|errno)\b")

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else ".")
bad = []
for path in sorted(list(root.glob("src/**/*.[ch]")) + list(root.glob("tests/**/*.c"))):
    text = path.read_text(errors="replace")
    for m in CALL.finditer(text):
        if NEG.search(m.group(2)):
            line = text.count("\n", 0, m.start()) + 1
            bad.append(f"{path.relative_to(root)}:{line}: {m.group(1)} with a negative errno (util.h: pass it positive)")
print("\n".join(bad) if bad else "every vs_err_set/vs_err_sys code is positive")
sys.exit(1 if bad else 0)
