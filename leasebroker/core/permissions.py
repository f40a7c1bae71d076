"""The Redis commands the broker runs, and the ACL rule that allows exactly those.

Scripts run under the caller's ACL command by command, so a user that lacks one
command would fail a script half-way, after its earlier writes (Redis does not roll
scripts back). ``serve`` and the store commands therefore try every command once at
start (``lua/check_permissions-1.lua``) and refuse to run without them.
"""

from __future__ import annotations

# Every command the broker sends inside scripts and directly. Keep in step with the
# scripts: tests/test_redis_permissions.py checks that each one the scripts call is here.
REQUIRED_COMMANDS = (
    "DEL", "EXISTS", "HSET", "HGET", "HMGET", "HGETALL", "HKEYS", "HINCRBY", "HDEL",
    "PEXPIREAT", "PERSIST", "PTTL", "TYPE", "TIME", "ZADD", "ZCOUNT", "ZRANGE",
    "ZRANGEBYSCORE", "ZREM", "ZREMRANGEBYSCORE", "ZSCORE", "SADD", "SISMEMBER", "SMEMBERS",
    "XADD", "XRANGE", "XREVRANGE", "XREAD", "XTRIM", "SCAN", "GET", "SET", "HEXISTS",
)  # fmt: skip
# What runs the scripts and checks the connection; INFO and CONFIG GET only feed the
# start-up checks (the Redis version, maxmemory-policy), which warn when denied.
CONNECTION_COMMANDS = ("EVALSHA", "EVAL", "SCRIPT|LOAD", "PING", "INFO", "CONFIG|GET")


def acl_rule(prefix: str, user: str = "leasebroker", password: str = "<password>") -> str:
    """``ACL SETUSER`` arguments for a user that may run the broker under ``prefix``
    and nothing else: its commands, on its keys only."""
    commands = " ".join(f"+{name.lower()}" for name in (*CONNECTION_COMMANDS, *REQUIRED_COMMANDS))
    return f"ACL SETUSER {user} on >{password} resetkeys ~{prefix}:* -@all {commands}"
