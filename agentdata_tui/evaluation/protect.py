"""Protected files (DESIGN §4): an agent earns reward by changing the code, never the judge.

The patch is split into its per-file sections, and every section that touches a protected path
(changed, added, deleted, or renamed/copied from or to one) is dropped *before* the patch is
applied; the filtered patch is the one the tests and every benchmark round use. Matching is
gitignore-style on the path relative to the repository root, as users already write it:

- a pattern without a slash (``test*``) matches a file or folder name at any depth, so
  ``test*`` covers ``pkg/test_x.py`` and everything under ``pkg/tests/``;
- a pattern with a slash (``tests/**``, ``/bench.py``) is anchored at the root;
- ``*`` and ``?`` stay within one path component, ``**`` spans any number of them, a
  trailing ``/`` matches folders only, ``!`` re-includes (the last matching pattern wins,
  and nothing beneath a matching folder can be re-included).

Why split the text ourselves rather than ``git apply --exclude``: the same filtered patch must
be uploaded once and toggled for each benchmark round, and its dropped paths listed. The
splitter reads hunks by their line counts as git does, and the evaluator cross-checks the
result with git's own parser (``git apply --numstat``) inside the sandbox.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_PROTECTED: tuple[str, ...] = (
    "test*",
    "*_test.*",
    "*_tests.*",
    "tests/**",
    "test/**",
    "bench*",
    "benchmarks/**",
)

_HUNK = re.compile(r"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_PATH_HEADERS = ("rename from ", "rename to ", "copy from ", "copy to ")


# -- gitignore-style matching -----------------------------------------------------------------


@lru_cache(maxsize=256)
def _compile(pattern: str) -> tuple[re.Pattern[str], bool, bool, bool] | None:
    """(regex over a slash-joined path, dir_only, anchored, negated); None for a no-op line."""
    pat = pattern.strip()
    if not pat or pat.startswith("#"):
        return None
    negated = pat.startswith("!")
    if negated:
        pat = pat[1:]
    dir_only = pat.endswith("/")
    pat = pat.rstrip("/")
    if not pat:
        return None
    anchored = "/" in pat
    pat = pat.lstrip("/")
    out: list[str] = []
    i = 0
    while i < len(pat):
        c = pat[i]
        if pat.startswith("**/", i) and (i == 0 or pat[i - 1] == "/"):
            out.append("(?:.*/)?")
            i += 3
        elif pat.startswith("/**", i) and i + 3 == len(pat):
            out.append("/.*")
            i += 3
        elif c == "*":
            if pat.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            j = pat.find("]", i + 2 if pat[i + 1 : i + 2] in ("!", "]") else i + 1)
            if j < 0:
                out.append(re.escape(c))
                i += 1
                continue
            body = pat[i + 1 : j]
            if body.startswith("!"):
                body = "^" + body[1:]
            out.append("[" + body.replace("\\", "\\\\") + "]")
            i = j + 1
        elif c == "\\" and i + 1 < len(pat):
            out.append(re.escape(pat[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return re.compile("".join(out) + r"\Z"), dir_only, anchored, negated


def _matches_one(compiled: tuple[re.Pattern[str], bool, bool, bool], parts: list[str], is_dir: bool) -> bool:
    regex, dir_only, anchored, _ = compiled
    if dir_only and not is_dir:
        return False
    return bool(regex.match("/".join(parts) if anchored else parts[-1]))


def _verdict(
    compiled: list[tuple[re.Pattern[str], bool, bool, bool]], parts: list[str], is_dir: bool
) -> bool:
    """The last pattern that matches decides (``!`` re-includes), as in a .gitignore."""
    for pattern in reversed(compiled):
        if _matches_one(pattern, parts, is_dir):
            return not pattern[3]
    return False


def is_protected(path: str, patterns: tuple[str, ...] | list[str]) -> bool:
    """Whether ``path`` (relative to the repo root) matches the patterns, as git's ignore rules
    would: a matching folder covers everything beneath it (a ``!`` cannot re-include there)."""
    parts = [p for p in path.strip("/").split("/") if p and p != "."]
    compiled = [c for c in (_compile(p) for p in patterns) if c is not None]
    if not parts or not compiled:
        return False
    for k in range(1, len(parts)):
        if _verdict(compiled, parts[:k], True):
            return True
    return _verdict(compiled, parts, False)


# -- splitting a patch into its files ---------------------------------------------------------


@dataclass
class FileSection:
    """One file's part of a patch: its lines (with their endings) and every path it names."""

    lines: list[str] = field(default_factory=list)
    paths: set[str] = field(default_factory=set)
    git_header: bool = False
    hunks: int = 0

    @property
    def text(self) -> str:
        return "".join(self.lines)


def _unquote(text: str) -> str:
    """A git C-quoted path (``"a/t\\303\\251st"``) back to text; anything else as is."""
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    raw = bytearray()
    body = text[1:-1]
    i = 0
    escapes = {"n": 10, "t": 9, '"': 34, "\\": 92, "a": 7, "b": 8, "f": 12, "r": 13, "v": 11}
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            if nxt in "01234567" and re.match(r"[0-7]{3}", body[i + 1 : i + 4]):
                raw.append(int(body[i + 1 : i + 4], 8))
                i += 4
                continue
            raw.append(escapes.get(nxt, ord(nxt)))
            i += 2
            continue
        raw.extend(c.encode("utf-8"))
        i += 1
    return raw.decode("utf-8", "replace")


def _strip_prefix(path: str) -> str | None:
    """``a/x/y`` → ``x/y`` (git apply's -p1); ``/dev/null`` → None."""
    path = _unquote(path.strip())
    if path == "/dev/null" or not path:
        return None
    return path.split("/", 1)[1] if "/" in path else path


def _header_path(line: str, prefix: str) -> str | None:
    """The path of a ``--- a/x`` / ``+++ b/x`` line (a tab may precede a timestamp)."""
    rest = line[len(prefix) :].rstrip("\r\n")
    if not rest.startswith('"') and "\t" in rest:
        rest = rest.split("\t", 1)[0]
    return _strip_prefix(rest)


def _git_line_paths(line: str) -> set[str]:
    """Every path a ``diff --git a/X b/Y`` line may name (spaces make it ambiguous: all splits)."""
    rest = line[len("diff --git ") :].rstrip("\r\n")
    found: set[str] = set()
    if rest.startswith('"'):
        m = re.match(r'("(?:[^"\\]|\\.)*")\s+(.*)\Z', rest)
        if m:
            for part in m.groups():
                p = _strip_prefix(part)
                if p:
                    found.add(p)
        return found
    for m in re.finditer(r" (?=\S)", rest):
        left, right = rest[: m.start()], rest[m.end() :]
        for part in (left, right):
            p = _strip_prefix(part)
            if p:
                found.add(p)
    return found


def split_patch(patch: str) -> tuple[str, list[FileSection]]:
    """(text before the first file, the per-file sections) — hunks read by their line counts."""
    lines = patch.splitlines(keepends=True)
    preamble: list[str] = []
    sections: list[FileSection] = []
    cur: FileSection | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        starts_git = line.startswith("diff --git ")
        starts_plain = (
            line.startswith("--- ")
            and nxt.startswith("+++ ")
            and not (cur is not None and cur.git_header and cur.hunks == 0 and not _has_both(cur))
        )
        if starts_git or starts_plain:
            cur = FileSection(git_header=starts_git)
            sections.append(cur)
            if starts_git:
                cur.paths |= _git_line_paths(line)
        if cur is None:
            preamble.append(line)
            i += 1
            continue
        m = _HUNK.match(line)
        if m:
            cur.lines.append(line)
            cur.hunks += 1
            old = int(m.group(1)) if m.group(1) is not None else 1
            new = int(m.group(2)) if m.group(2) is not None else 1
            i += 1
            while i < len(lines) and (old > 0 or new > 0):
                body = lines[i]
                tag = body[:1]
                if tag == "\\":  # "\ No newline at end of file"
                    pass
                elif tag == "-":
                    old -= 1
                elif tag == "+":
                    new -= 1
                else:  # context (" " or an empty line git may leave for a blank context line)
                    old -= 1
                    new -= 1
                cur.lines.append(body)
                i += 1
            while i < len(lines) and lines[i].startswith("\\"):
                cur.lines.append(lines[i])
                i += 1
            continue
        if line.startswith("--- "):
            p = _header_path(line, "--- ")
            if p:
                cur.paths.add(p)
        elif line.startswith("+++ "):
            p = _header_path(line, "+++ ")
            if p:
                cur.paths.add(p)
        else:
            for head in _PATH_HEADERS:
                if line.startswith(head):
                    p = _unquote(line[len(head) :].rstrip("\r\n"))
                    if p:
                        cur.paths.add(p)
        cur.lines.append(line)
        i += 1
    return "".join(preamble), sections


def _has_both(section: FileSection) -> bool:
    return any(x.startswith("+++ ") for x in section.lines)


def filter_patch(patch: str, patterns: tuple[str, ...] | list[str]) -> tuple[str, list[str]]:
    """(the patch without the sections that touch protected paths, the sorted protected paths)."""
    if not patterns:
        return patch, []
    preamble, sections = split_patch(patch)
    kept: list[str] = []
    dropped: set[str] = set()
    for section in sections:
        hits = {p for p in section.paths if is_protected(p, patterns)}
        if hits:
            dropped |= hits
        else:
            kept.append(section.text)
    if not dropped:
        return patch, []
    body = "".join(kept)
    return (preamble + body if body else ""), sorted(dropped)
