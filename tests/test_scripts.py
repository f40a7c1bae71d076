"""The Lua scripts: documented headers, one outcome list shared with Python, the key-count
check, recovery after the server forgets its scripts, and error line numbers."""

from __future__ import annotations

import re
import shutil
import types
from pathlib import Path

import pytest
from support import lease_request

from leasebroker.core import scripts as scripts_module
from leasebroker.core.model import LeaseState
from leasebroker.core.outcomes import Outcome
from leasebroker.core.scripts import BoundScript, Scripts, inline_constants, load_sources
from leasebroker.core.settings import EVENTS_OFF

LUA_DIR = Path(__file__).resolve().parent.parent / "lua"
NAME_RE = re.compile(r"^(?P<name>[a-z_]+)-(?P<keys>\d+)\.lua$")
SCRIPT_FILES = sorted(p for p in LUA_DIR.glob("*.lua") if p.name != "_lib.lua")
ALL_LUA_FILES = sorted(LUA_DIR.glob("*.lua"))
OUTCOME_RE = re.compile(r"\bOUTCOME\.([A-Za-z_][A-Za-z0-9_]*)")


def header_lines(path: Path) -> list[str]:
    """The leading comment block, without the ``--`` markers."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("--"):
            break
        lines.append(line[2:])
    return lines


def body_lines(path: Path) -> list[str]:
    """Code lines after the header, with comments cut off."""
    lines = path.read_text(encoding="utf-8").splitlines()
    body = lines[len(header_lines(path)) :]
    return [line.split("--", 1)[0] for line in body]


def returns_section(header: list[str]) -> list[str]:
    """The header's ``Returns`` paragraph: from the Returns line to the next blank line."""
    for i, line in enumerate(header):
        if line.strip().startswith("Returns"):
            section = []
            for rest in header[i:]:
                if not rest.strip():
                    break
                section.append(rest)
            return section
    return []


def key_count(path: Path) -> int:
    match = NAME_RE.match(path.name)
    assert match, f"{path.name} is not named <op>-<keycount>.lua"
    return int(match["keys"])


def test_every_script_is_found_and_loaded():
    assert SCRIPT_FILES, "no scripts found"
    sources = load_sources()
    assert set(sources) == {NAME_RE.match(p.name)["name"] for p in SCRIPT_FILES}
    for path in SCRIPT_FILES:
        source = sources[NAME_RE.match(path.name)["name"]]
        assert source.key_count == key_count(path)
        text = path.read_text(encoding="utf-8")
        assert source.text.endswith(" " + inline_constants(text, path.name))
        # The helpers join the first line: Redis's line numbers are the file's.
        assert source.text.count("\n") == text.count("\n")
        # Every enum name became its value: no script builds a table of them per call.
        enum_name = r"\b(OUTCOME|LEASE_STATE|BOOKING_STATUS|CAPACITY_SOURCE)\."
        assert not re.search(enum_name, source.text)
        assert "EVENTS_OFF" not in source.text


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_header_names_the_operation_and_documents_every_key(path):
    header = header_lines(path)
    assert header, f"{path.name} must start with a header comment"
    name = NAME_RE.match(path.name)["name"]
    assert header[0].strip().startswith(f"{name}:"), "first line: '-- <operation>: what it does'"
    count = key_count(path)
    documented = {
        int(m[1]) for line in header for m in [re.match(r"\s*KEYS\[(\d+)\]\s+\S", line)] if m
    }
    assert documented == set(range(1, count + 1)), f"KEYS documented: {sorted(documented)}"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_body_uses_only_its_keys(path):
    count = key_count(path)
    used = {int(i) for line in body_lines(path) for i in re.findall(r"KEYS\[(\d+)\]", line)}
    assert used <= set(range(1, count + 1)), f"uses KEYS{sorted(used)}, declares {count}"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_header_documents_the_replies(path):
    section = returns_section(header_lines(path))
    documented = {name for line in section for name in OUTCOME_RE.findall(line)}
    assert documented, f"{path.name}: the header needs a 'Returns {{OUTCOME.X, ...}}' section"
    assert documented <= set(Outcome.__members__), documented - set(Outcome.__members__)
    # Every outcome the body replies with is one the header lists.
    returned = {name for line in body_lines(path) for name in OUTCOME_RE.findall(line)}
    assert returned <= documented, f"undocumented replies: {sorted(returned - documented)}"


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_replies_never_spell_a_number(path):
    for number, line in enumerate(body_lines(path), start=len(header_lines(path)) + 1):
        for reply in re.findall(r"return\s*\{\s*([^,}\s]*)", line):
            assert reply.startswith("OUTCOME."), f"{path.name}:{number}: {line.strip()}"


@pytest.mark.parametrize("path", ALL_LUA_FILES, ids=lambda p: p.name)
def test_every_outcome_referenced_exists(path):
    names = set(OUTCOME_RE.findall(path.read_text(encoding="utf-8")))
    assert names <= set(Outcome.__members__), names - set(Outcome.__members__)


@pytest.mark.parametrize("path", ALL_LUA_FILES, ids=lambda p: p.name)
def test_scripts_stay_portable(path):
    """Nothing fakeredis lacks, no KEYS scan, no error tables (they lose their message)."""
    code = "\n".join(body_lines(path))
    assert not re.search(r"\b(cmsgpack|bit|struct)\.|sha1hex|\berror\s*\(\s*\{", code), path.name
    assert not re.search(r"redis\.p?call\(\s*['\"]KEYS['\"]", code, re.IGNORECASE)
    # Globals break every later EVAL on a fakeredis client: functions must be local.
    assert not re.search(r"^\s*function\b", code, re.MULTILINE)


def test_lib_has_no_trailing_comments():
    """_lib.lua is joined into one line: a trailing comment would swallow the rest."""
    for number, line in enumerate((LUA_DIR / "_lib.lua").read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("--"):
            assert "--" not in stripped, f"_lib.lua:{number}: {stripped}"


def test_every_enum_name_becomes_its_value():
    for outcome in Outcome:
        code = f"return {{OUTCOME.{outcome.name}, x}}"
        assert inline_constants(code, "t.lua") == f"return {{{int(outcome)}, x}}"
    assert len(set(Outcome)) == len(Outcome.__members__), "an outcome value is reused"
    for state in LeaseState:
        assert inline_constants(f"s == LEASE_STATE.{state.name}", "t.lua") == f"s == '{state}'"
    assert inline_constants("keep == EVENTS_OFF", "t.lua") == f"keep == {EVENTS_OFF}"
    # Names that are not ours stay, and so do words that merely contain one of ours.
    code = "MY_OUTCOME.OK; x.OUTCOME; NOT_EVENTS_OFF; U.S"
    assert inline_constants(code, "t.lua") == code


def test_a_member_the_enum_lacks_fails_loading():
    with pytest.raises(ValueError, match=r"t\.lua: OUTCOME\.NOPE names no member of Outcome"):
        inline_constants("return {OUTCOME.NOPE}", "t.lua")


# ---------------------------------------------------------------- calling scripts


@pytest.mark.parametrize("delta", [-1, 1])
def test_bound_script_refuses_a_wrong_key_count(redis_client, key_prefix, delta):
    source = load_sources()["create_lease"]
    script = BoundScript(redis_client, source)
    keys = [f"{key_prefix}:{{m}}:k{i}" for i in range(source.key_count + delta)]
    with pytest.raises(ValueError, match="takes 7 keys"):
        script(keys, ["x"] * 11)
    assert list(redis_client.scan_iter(match=f"{key_prefix}:*")) == []


def test_scripts_expose_their_key_counts(redis_client):
    registered = Scripts(redis_client)
    for path in SCRIPT_FILES:
        assert registered[NAME_RE.match(path.name)["name"]].key_count == key_count(path)


def test_script_cache_flush_is_recovered(make_broker, redis_client):
    broker = make_broker(default_capacity=2)
    first = broker.create_lease(lease_request(client_reference="r1"))
    redis_client.script_flush()
    sha = broker.scripts["create_lease"]._script.sha
    assert redis_client.script_exists(sha) == [False]
    second = broker.create_lease(lease_request(client_reference="r2"))
    assert (first.fence, second.fence) == (1, 2)
    assert not second.replayed


def test_lua_error_line_numbers_match_the_file(redis_client, tmp_path, monkeypatch):
    """The preamble shares line 1 with the header, so Redis reports the file's own lines."""
    folder = tmp_path / "lua"
    folder.mkdir()
    shutil.copy(LUA_DIR / "_lib.lua", folder / "_lib.lua")
    (folder / "broken-0.lua").write_text(
        "-- broken: fails on line 6\n--\n-- Returns {OUTCOME.OK}\n\nlocal missing = nil\n"
        "return {OUTCOME.OK, missing + 1}\n"
    )
    monkeypatch.setattr(
        scripts_module, "resources", types.SimpleNamespace(files=lambda _: tmp_path)
    )
    load_sources.cache_clear()
    try:
        broken = BoundScript(redis_client, load_sources()["broken"])
    finally:
        load_sources.cache_clear()
    with pytest.raises(Exception, match="arithmetic") as failure:
        broken([], [])
    line_numbers = re.findall(r":(\d+):", str(failure.value))
    assert line_numbers and line_numbers[0] == "6", str(failure.value)
