#!/usr/bin/python3
"""Fuzz every SQL function of presence (and presence_proxy's, if there)
with random arguments: values at and past each limit, wrong types, NULLs,
multibyte and control characters, invalid UTF-8, other client encodings.

  python3 test/fuzz/sql_args.py [--calls N] [--seed S]

Connects with libpq's environment (PGHOST, PGPORT, PGUSER, PGDATABASE).
Each call runs in its own transaction, rolled back.  A call may succeed or
fail with an error; it fails the run when the error has no proper errcode
(XX000 internal_error: an elog, not an ereport; XX001/XX002 corruption),
when the server closes the connection (a crash, or an assertion failure on
an assert build), or when it takes longer than the statement timeout.
Exit status 1 then, with the call that did it.  Test: test/assert_build.sh.
"""
import argparse
import random
import sys

import psycopg

TEXTS = ["", "a", "x" * 255, "x" * 256, "n" * 1024, "n" * 1025, "m" * 2049,
         "y" * 70000, "é" * 128, "🦊" * 64, "🦊" * 300, "中" * 86,
         "\x01\x1f\x7f" * 400, "\n\r\t\b\f", '"\\/', "'; --", "presence:x",
         "pg-1-2", "pg-2147483647-9223372036854775807", "human", "agent_for",
         "available", "busy", "blocked", "broadcast", "topic", "both",
         "\u2028\ufeff", "%s%n", "$1", "{}", "null"]
INTS = ["0", "1", "-1", "2147483647", "-2147483648", "7"]
BIGINTS = ["0", "1", "-1", "9223372036854775807", "-9223372036854775808",
           "4102444800", "1716392400"]
JSONS = ['{}', '[]', '1', '"s"', 'null', 'true', '{"a": 1}',
         '{"k": "' + "v" * 2040 + '"}', '{"k": "' + "v" * 3000 + '"}',
         '[' * 500 + ']' * 500, '{"a": {"b": {"c": [1, 2, {"d": null}]}}}',
         '{"🦊": "\\u0001\\u001f"}', '{"a": 1e308}', '{"a": -0}']
INTERVALS = ["0", "1 second", "-1 second", "1 day -1 hour", "100 years",
             "101 years", "178000000 years", "-178000000 years"]
TIMESTAMPS = ["infinity", "-infinity", "1970-01-01 00:00:00+00",
              "294276-12-31 23:59:59+00", "4713-01-01 BC", "2026-01-01"]
POOLS = {
    "text": TEXTS, "character varying": TEXTS, "name": TEXTS,
    "integer": INTS, "smallint": ["0", "-1", "32767"],
    "bigint": BIGINTS, "jsonb": JSONS, "json": JSONS,
    "boolean": ["true", "false"], "interval": INTERVALS,
    "timestamp with time zone": TIMESTAMPS,
    "text[]": ["{}", "{a,b}", "{NULL}", "{" + ",".join(["t"] * 5000) + "}",
               '{"' + "x" * 300 + '"}'],
    "integer[]": ["{}", "{1,2}", "{NULL}", "{-1,2147483647}"],
    "oid": ["0", "1", "4294967295"], "regrole": ["postgres", "-"],
}
ANY_VALUES = [v for pool in POOLS.values() for v in pool]
ENCODINGS = ["UTF8", "LATIN1", "EUC_JP", "WIN1252"]
INVALID_UTF8 = [b"\\xff", b"\\xc3\\x28", b"\\xe2\\x82", b"\\xf0\\x9f\\xa6",
                b"\\xed\\xa0\\x80"]
BAD_STATES = {"XX000", "XX001", "XX002"}


def functions(conn):
    return conn.execute("""
        SELECT n.nspname, p.proname, p.proargtypes::regtype[]::text[],
               p.pronargdefaults, p.proretset
          FROM pg_proc p
          JOIN pg_namespace n ON n.oid = p.pronamespace
          JOIN pg_depend d ON d.classid = 'pg_proc'::regclass
                          AND d.objid = p.oid AND d.deptype = 'e'
          JOIN pg_extension e ON e.oid = d.refobjid
         WHERE e.extname IN ('presence', 'presence_proxy')
           AND p.prorettype <> 'trigger'::regtype
         ORDER BY 1, 2, 3""").fetchall()


def literal(value):
    """A standard-conforming string literal, UTF-8."""
    return ("'" + value.replace("'", "''") + "'").encode()


def identifier(name):
    return ('"' + name.replace('"', '""') + '"').encode()


def argument(rng, argtype):
    """A literal of the query (bytes) for one argument of type argtype."""
    r = rng.random()
    if r < 0.15:
        return b"NULL"
    if r < 0.22:
        # another type's value, cast to this one
        value = rng.choice(ANY_VALUES)
    elif r < 0.27 and argtype in ("text", "jsonb"):
        return b"E'" + rng.choice(INVALID_UTF8) + b"'::" + argtype.encode()
    else:
        value = rng.choice(POOLS.get(argtype, ANY_VALUES))
    return literal(value) + b"::" + argtype.encode()


def call(rng, fn):
    schema, name, argtypes, ndefaults, retset = fn
    nargs = len(argtypes) - rng.randint(0, ndefaults)
    args = b", ".join(argument(rng, t) for t in argtypes[:nargs])
    target = identifier(schema) + b"." + identifier(name)
    return b"SELECT count(*) FROM (SELECT " + target + b"(" + args + b")) AS f" \
        if not retset else \
        b"SELECT count(*) FROM " + target + b"(" + args + b")"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=None)
    opts = ap.parse_args()
    seed = opts.seed if opts.seed is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    print(f"seed {seed}")
    conn = psycopg.connect(autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS presence")
    fns = functions(conn)
    print(f"{len(fns)} functions")
    outcomes = {}
    for i in range(opts.calls):
        fn = rng.choice(fns)
        query = call(rng, fn)
        encoding = rng.choice(ENCODINGS)
        try:
            with conn.transaction(force_rollback=True):
                conn.execute("SET LOCAL statement_timeout = '10s'")
                conn.execute(f"SET LOCAL client_encoding = '{encoding}'")
                conn.execute(query)
            state = "ok"
        except psycopg.errors.QueryCanceled:
            state = "57014"
        except psycopg.Error as e:
            if conn.closed or conn.broken:
                print(f"call {i}: the server closed the connection "
                      f"(crash or assertion failure), seed {seed}:")
                print(query[:2000].decode("utf-8", "replace"))
                return 1
            state = e.sqlstate or "none"
            if state in BAD_STATES or state == "none":
                print(f"call {i}: {state} {e.diag.message_primary}, seed {seed}:")
                print(query[:2000].decode("utf-8", "replace"))
                return 1
        if state == "57014":
            print(f"call {i}: statement timeout, seed {seed}:")
            print(query[:2000].decode("utf-8", "replace"))
            return 1
        outcomes[state] = outcomes.get(state, 0) + 1
    conn.execute("SELECT 1")
    print(f"{opts.calls} calls over {len(fns)} functions, outcomes: " +
          ", ".join(f"{k} {v}" for k, v in sorted(outcomes.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
