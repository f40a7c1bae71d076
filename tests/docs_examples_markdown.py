"""Reading the examples out of the Markdown docs, and comparing a run's output with them.

Used by tests/test_docs_examples.py. Three jobs:

- :func:`read_blocks` finds every fenced code block of a Markdown file, with the
  ``<!-- docs-test: ... -->`` directive written just above it, if any;
  :func:`console_commands` splits a ``console`` block into its ``$ `` commands and the
  output shown under each.
- :class:`Rewriter` moves an example from the docs' world to the test's: slot dates
  shifted to the future, the key prefix, the server's ports, the Redis database, and
  lease, booking and stream ids the docs show (bound to the ids the run produced).
- :func:`expected_pattern` turns an example's shown output into a regular expression
  that matches the same shape: literal text stays literal, while ids, clock readings,
  TTLs and digests match any value (and a doc id seen for the first time is bound to
  the id in the same place of the real output).
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

# ---------------------------------------------------------------- reading the Markdown

FENCE_RE = re.compile(r"^```(?P<lang>[A-Za-z0-9_-]*)\s*$")
DIRECTIVE_RE = re.compile(r"^<!--\s*docs-test:(?P<body>.*?)-->\s*$")
HEADING_RE = re.compile(r"^#{1,6}\s+(?P<title>.*)$")


@dataclass
class Block:
    """One fenced code block of a Markdown file."""

    path: str  # relative to the repository, e.g. "docs/operations.md"
    line: int  # 1-based line of the opening fence
    lang: str  # "console", "sh", "python", "text", "json", "sql", ""
    text: str  # the lines between the fences, each ending in "\n"
    heading: str  # the nearest heading above it
    directives: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    @property
    def first_line(self) -> str:
        return next((line for line in self.text.splitlines() if line.strip()), "")


def parse_directives(body: str) -> dict[str, str]:
    """``before=hook interrupt`` -> {"before": "hook", "interrupt": ""}."""
    result = {}
    for word in body.split():
        name, _, value = word.partition("=")
        result[name] = value
    return result


def read_blocks(root: Path, path: str) -> list[Block]:
    """Every fenced block of ``root / path``, in order. A ``<!-- docs-test: ... -->``
    comment applies to the next block when only blank lines come between."""
    blocks: list[Block] = []
    lines = (root / path).read_text(encoding="utf-8").splitlines()
    heading, pending, i = "", {}, 0
    while i < len(lines):
        line = lines[i]
        if match := HEADING_RE.match(line):
            heading, pending = match["title"], {}
        elif match := DIRECTIVE_RE.match(line):
            pending = parse_directives(match["body"])
        elif match := FENCE_RE.match(line):
            start, body = i, []
            i += 1
            while i < len(lines) and lines[i].strip() != "```":
                body.append(lines[i] + "\n")
                i += 1
            if i == len(lines):
                raise AssertionError(f"{path}:{start + 1}: code block is never closed")
            blocks.append(Block(path, start + 1, match["lang"], "".join(body), heading, pending))
            pending = {}
        elif line.strip():
            pending = {}
        i += 1
    return blocks


@dataclass
class Command:
    """One ``$ `` command of a console block, and the output shown under it."""

    line: int  # 1-based line in the Markdown file
    text: str  # the command as typed, continuation lines included
    expected: list[str]


def is_complete_shell(text: str) -> bool:
    """Whether bash sees ``text`` as complete (no open quote, no trailing backslash)."""
    if text.endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
    return "unexpected end of file" not in check.stderr and "unexpected EOF" not in check.stderr


def console_commands(block: Block) -> list[Command]:
    """The commands of a ``console`` block: a line starting with ``$ `` starts one, and
    it goes on over the next lines until bash sees it complete; the lines up to the
    next ``$ `` are its output."""
    lines = block.text.splitlines()
    if lines and not lines[0].startswith("$ "):
        raise AssertionError(f"{block.where}: a console block must start with a $ command")
    commands: list[Command] = []
    i = 0
    while i < len(lines):
        start = i
        text = lines[i][2:]
        while not is_complete_shell(text):
            i += 1
            if i == len(lines):
                raise AssertionError(f"{block.path}:{block.line + 1 + start}: command never ends")
            text += "\n" + lines[i]
        i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        commands.append(Command(block.line + 1 + start, text, expected))
    return commands


# ---------------------------------------------------------------- from the docs to the run

# The docs' slots are on 2026-12-01 (and the day after); their other clock readings are
# from the session that produced the outputs, 2026-11-21. Dates from SLOT_ERA_START on are
# slot dates, shifted so that they stay in the future; earlier ones are clock readings.
DOC_SLOT_DAY = date(2026, 12, 1)
SLOT_ERA_START = date(2026, 11, 28)
SLOT_ERA_END = date(2027, 1, 1)
_EPOCH = date(1970, 1, 1)
_ERA_START_S = (SLOT_ERA_START - _EPOCH).days * 86400
_ERA_END_S = (SLOT_ERA_END - _EPOCH).days * 86400


def days_to_shift(today: date) -> int:
    """Move the docs' slot day to a week from ``today``."""
    return (today + timedelta(days=7) - DOC_SLOT_DAY).days


def in_slot_era(day: date) -> bool:
    return SLOT_ERA_START <= day < SLOT_ERA_END


ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d\d)-(\d\d)(?=\b|T)")
COMPACT_DATE_RE = re.compile(r"\b(\d{4})(\d\d)(\d\d)(?=T\d{6})")
PY_DATE_RE = re.compile(r"\bdatetime\((\d{4}), (\d{1,2}), (\d{1,2})")
EPOCH_RE = re.compile(r"(?<![\d.-])(\d{10}|\d{13}|\d{19})(?![\d-])")
ID_RE = re.compile(r"\b([lb])\.([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])")
KEY_TOKEN_RE = re.compile(r"(?:(?<=:lease:)|(?<=:booking:))([A-Za-z0-9_-]{22})(?![A-Za-z0-9_-])")
STREAM_ID_RE = re.compile(r"(?<![\d.])(\d{13}-\d+)\b")


def made_up(value: str) -> bool:
    """An id the docs invent to show a refusal (``l.c2Fsb24tNDI.AAAA...``): used as it is."""
    return len(set(value[-22:])) == 1


@dataclass
class Rewriter:
    """Everything that differs between a doc's session and the test's run."""

    shift_days: int
    prefix: str  # replaces the docs' key prefix "lb"
    redis_db: int  # replaces the docs' database numbers (/0, /15)
    ports: dict[str, str] = field(default_factory=dict)  # "50051" -> the server's port
    ids: dict[str, str] = field(default_factory=dict)  # doc id or token -> real one
    stream_ids: dict[str, str] = field(default_factory=dict)

    # -- dates
    def _day(self, y: str, m: str, d: str) -> date | None:
        try:
            day = date(int(y), int(m), int(d))
        except ValueError:
            return None
        return day if in_slot_era(day) else None

    def shift_dates(self, text: str) -> str:
        delta = timedelta(days=self.shift_days)

        def iso(match: re.Match) -> str:
            day = self._day(*match.groups())
            return (day + delta).isoformat() if day else match[0]

        def compact(match: re.Match) -> str:
            day = self._day(*match.groups())
            return (day + delta).strftime("%Y%m%d") if day else match[0]

        def py(match: re.Match) -> str:
            day = self._day(*match.groups())
            if not day:
                return match[0]
            moved = day + delta
            return f"datetime({moved.year}, {moved.month}, {moved.day}"

        def epoch(match: re.Match) -> str:
            digits = match[1]
            scale = {10: 1, 13: 1000, 19: 1_000_000_000}[len(digits)]
            value = int(digits)
            if _ERA_START_S * scale <= value < _ERA_END_S * scale:
                return str(value + self.shift_days * 86400 * scale)
            return digits

        text = ISO_DATE_RE.sub(iso, text)
        text = COMPACT_DATE_RE.sub(compact, text)
        text = PY_DATE_RE.sub(py, text)
        return EPOCH_RE.sub(epoch, text)

    def slot_ns(self, day_offset: int, hhmm: str) -> int:
        """A slot start in the run's world: the (shifted) slot day of the docs, plus
        ``day_offset`` days, at ``hhmm`` UTC; in nanoseconds."""
        day = DOC_SLOT_DAY + timedelta(days=day_offset + self.shift_days)
        hour, minute = (int(part) for part in hhmm.split(":"))
        start = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc)
        return int(start.timestamp()) * 1_000_000_000

    # -- everything a command or a program needs
    def setting(self, text: str) -> str:
        """Dates, prefix, database and ports; not ids."""
        text = self.shift_dates(text)
        text = re.sub(r"\blbdemo\b", f"{self.prefix}demo", text)
        text = re.sub(r"\blb\b", self.prefix, text)
        text = re.sub(r"(redis://127\.0\.0\.1:6379/)\d+", rf"\g<1>{self.redis_db}", text)
        for doc_port, port in self.ports.items():
            text = re.sub(rf"\b127\.0\.0\.1:{doc_port}\b", f"127.0.0.1:{port}", text)
        return text

    def command(self, text: str, where: str) -> str:
        """A command or program, ready to run: every doc id in it must be bound."""
        text = self.setting(text)

        def bound(table: dict[str, str], what: str) -> object:
            def sub(match: re.Match) -> str:
                if made_up(match[0]):
                    return match[0]
                if match[0] not in table:
                    raise AssertionError(
                        f"{where}: {what} {match[0]} is used before any output or setup "
                        "step of the test produced it"
                    )
                return table[match[0]]

            return sub

        text = ID_RE.sub(bound(self.ids, "id"), text)
        text = KEY_TOKEN_RE.sub(bound(self.ids, "token"), text)
        return STREAM_ID_RE.sub(bound(self.stream_ids, "stream id"), text)

    def bind_id(self, doc_id: str, real_id: str) -> None:
        """From now on ``doc_id`` (and its token) means ``real_id``."""
        for table_key, value in ((doc_id, real_id), (doc_id[-22:], real_id[-22:])):
            known = self.ids.get(table_key)
            if known is not None and known != value:
                raise AssertionError(f"{doc_id} is bound to {known}, and now to {value}")
            self.ids[table_key] = value
        holders = [d for d, r in self.ids.items() if r == real_id and len(d) > 22]
        if len(holders) > 1:
            raise AssertionError(f"the docs show {real_id} as two different ids: {holders}")


# ---------------------------------------------------------------- matching outputs


def normalize(text: str) -> str:
    """Trailing blanks dropped, runs of blanks inside a line made one space, and tabs
    too: table widths change with ids and prefixes, and grpcurl indents with tabs."""
    lines = []
    for line in text.splitlines():
        stripped = line.rstrip()
        indent = stripped[: len(stripped) - len(stripped.lstrip())]
        lines.append(indent + re.sub(r"[ \t]+", " ", stripped.lstrip()))
    return "\n".join(lines)


# What varies from run to run, and the pattern any value of it matches. Order matters:
# the first alternative that matches at a position wins.
_VOLATILE = [
    ("id", ID_RE.pattern),
    ("token", KEY_TOKEN_RE.pattern),
    ("stream", STREAM_ID_RE.pattern),
    ("instant", r"\b\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z"),
    ("epoch", r"(?<![\d.-])\d{13}(?![\d-])"),
    # SHA-256 digests: whole (64 hex digits) or a fingerprint's first half (32).
    ("digest", r"\b(?:[0-9a-f]{64}|[0-9a-f]{32})\b"),
    ("ttl", r"\b\d+[dhm](?:\d+[hm])*\d+s\b"),
    ("integer", r"(?<=\(integer\) )\d{4,}\b"),
    ("bytes", r'"\\x[^\n]*"'),
]
_VOLATILE_RE = re.compile("|".join(f"(?P<{name}>{pattern})" for name, pattern in _VOLATILE))
ANY_ID = r"[A-Za-z0-9_-]{22}"


@dataclass
class Expected:
    """An example's output as a pattern, and what to bind once it has matched."""

    pattern: str
    binds: dict[str, tuple[str, str]]  # group -> ("id" | "token" | "stream", doc value)


def line_pattern(line: str, rewriter: Rewriter, binds: dict[str, tuple[str, str]]) -> str:
    """One normalized expected line as a regular expression."""
    if line.endswith("...") and line.strip() != "...":  # a line the docs cut short
        return line_pattern(line[:-3], rewriter, binds) + r"[^\n]*"
    out, pos = [], 0
    first_group = {doc: name for name, (_, doc) in binds.items()}
    for match in _VOLATILE_RE.finditer(line):
        out.append(re.escape(line[pos : match.start()]))
        pos = match.end()
        kind, value = match.lastgroup, match[0]
        if kind in ("id", "token") and made_up(value):
            out.append(re.escape(value))
        elif kind in ("id", "token", "stream"):
            table = rewriter.stream_ids if kind == "stream" else rewriter.ids
            if value in table:
                out.append(re.escape(table[value]))
            elif value in first_group:
                out.append(f"(?P={first_group[value]})")
            else:
                name = f"g{len(binds)}"
                binds[name] = (kind, value)
                first_group[value] = name
                if kind == "id":
                    kind_char, merchant, _token = ID_RE.fullmatch(value).groups()
                    body = rf"{kind_char}\.{re.escape(merchant)}\.{ANY_ID}"
                else:
                    body = ANY_ID if kind == "token" else r"\d{13}-\d+"
                out.append(f"(?P<{name}>{body})")
        elif kind == "instant" and in_slot_era(date.fromisoformat(value[:10])):
            out.append(re.escape(value))  # a slot's time: exact
        elif kind == "epoch" and (_ERA_START_S * 1000 <= int(value) < _ERA_END_S * 1000):
            out.append(re.escape(value))  # a slot's start in ms: exact
        elif kind == "instant":
            out.append(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z")
        elif kind == "epoch":
            out.append(r"\d{13}")
        elif kind == "digest":
            out.append(f"[0-9a-f]{{{len(value)}}}")
        elif kind == "ttl":
            out.append(r"(?:\d+[dhms])+")
        elif kind == "integer":
            out.append(r"\d+")
        else:  # bytes
            out.append(r'"[^\n]*"')
    out.append(re.escape(line[pos:]))
    return "".join(out)


def expected_pattern(lines: list[str], rewriter: Rewriter) -> Expected:
    """The shown output as one pattern for the whole (normalized) output. A line that is
    just ``...`` stands for any number of lines."""
    binds: dict[str, tuple[str, str]] = {}
    parts = []
    for line in _shown(lines, rewriter):
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(line_pattern(line, rewriter, binds) + r"\n")
    return Expected("".join(parts), binds)


_NUMBERING = re.compile(r"^\s*\d+\) ")


def _shown(lines: list[str], rewriter: Rewriter) -> list[str]:
    return normalize(rewriter.setting("\n".join(lines))).split("\n") if lines else []


def _as_multiset(want: list[str], have: list[str], rewriter: Rewriter) -> str | None:
    """Each shown line matches a printed line of its own; a ``...`` line among the shown
    ones lets the printed ones have more lines."""
    cut = any(x.strip() == "..." for x in want)
    want = [x for x in want if x.strip() and x.strip() != "..."]
    have = [x for x in have if x.strip()]
    if len(want) != len(have) and not (cut and len(want) < len(have)):
        return f"{len(want)} lines shown, {len(have)} printed:\n" + "\n".join(have)
    for line in want:
        pattern = re.compile(line_pattern(line, rewriter, {}))
        partner = next((h for h in have if pattern.fullmatch(h)), None)
        if partner is None:
            return f"nothing printed matches the shown line\n  {line}\nprinted:\n" + "\n".join(have)
        have.remove(partner)
    return None


def unordered_match(lines: list[str], actual: str, rewriter: Rewriter) -> str | None:
    """Compare as a multiset of lines (a listing sorted by random tokens, a SET's
    members); redis-cli's ``N) `` numbering is ignored. None when they match, else
    what differs. Every id in such a listing must be bound already."""
    want = [_NUMBERING.sub("", x) for x in _shown(lines, rewriter)]
    have = [_NUMBERING.sub("", x) for x in normalize(actual).split("\n")]
    return _as_multiset(want, have, rewriter)


def pairs_match(lines: list[str], actual: str, rewriter: Rewriter) -> str | None:
    """Compare redis-cli HGETALL replies as sets of field/value pairs (the order of a
    hash's fields is Redis's business). None when they match, else what differs."""

    def pairs(values: list[str]) -> list[str]:
        values = [_NUMBERING.sub("", x) for x in values if x.strip()]
        return [f"{values[i]} {values[i + 1]}" for i in range(0, len(values) - 1, 2)]

    want = pairs(_shown(lines, rewriter))
    return _as_multiset(want, pairs(normalize(actual).split("\n")), rewriter)


def match_output(lines: list[str], actual: str, rewriter: Rewriter) -> str | None:
    """None when ``actual`` has the shape of the shown ``lines`` (and the doc ids it
    revealed are bound from then on); else a message saying what differs."""
    expected = expected_pattern(lines, rewriter)
    text = normalize(actual)
    match = re.fullmatch(expected.pattern, text + "\n" if text else "")
    if match is None:
        return first_difference(lines, actual, rewriter)
    for group, (kind, doc_value) in expected.binds.items():
        if kind == "stream":
            rewriter.stream_ids[doc_value] = match[group]
        elif kind == "id":
            rewriter.bind_id(doc_value, match[group])
        else:
            rewriter.ids.setdefault(doc_value, match[group])
    return None


def first_difference(lines: list[str], actual: str, rewriter: Rewriter) -> str:
    """Where the shown output and the printed one part, for the failure message."""
    want = _shown(lines, rewriter)
    have = normalize(actual).split("\n") if actual.strip() else []
    for index, line in enumerate(want):
        if line.strip() == "...":
            return f"shown:\n{chr(10).join(want)}\n--- printed:\n{chr(10).join(have)}"
        got = have[index] if index < len(have) else "<nothing>"
        if not re.fullmatch(line_pattern(line, rewriter, {}), got):
            return (
                f"line {index + 1} differs\n  shown:   {line}\n  printed: {got}\n"
                f"--- whole output printed:\n{chr(10).join(have)}"
            )
    return f"printed more than shown:\n{chr(10).join(have[len(want) :])}"
