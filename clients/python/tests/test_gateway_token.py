"""examples/gateway_py's tokens: the same format and rules as
examples/gateway/lib/token.js."""

import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[3] / "examples" / "gateway_py"))
from token_auth import TokenError, sign, verify  # noqa: E402


class Tokens(unittest.TestCase):
    def test_signed(self):
        t = sign({"sub": "user:alice", "name": " Alice "}, "s3cret")
        self.assertEqual(verify(t, "s3cret"), {"principal": "user:alice", "kind": "human", "agent_id": "",
                                               "name": "Alice"})
        for bad in (t + "x", t.split(".")[0], sign({"sub": "user:alice"}, "other")):
            with self.assertRaises(TokenError):
                verify(bad, "s3cret")
        with self.assertRaises(TokenError):
            verify(sign({"sub": "user:alice", "exp": 100}, "s3cret"), "s3cret", now=101)

    def test_demo_mode_checks_the_shape(self):
        self.assertEqual(verify(sign({"sub": "user:a", "kind": "agent_for", "agent": "bot"}, ""), ""),
                         {"principal": "user:a", "kind": "agent_for", "agent_id": "bot"})
        for p in ({"sub": ""}, {"sub": "user:x", "kind": "robot"}, {"sub": "user:x", "kind": "agent_for"},
                  {"sub": "user:x", "agent": "bot"}, {"sub": "user:x", "name": "n" * 65}):
            with self.assertRaises(TokenError, msg=p):
                verify(sign(p, ""), "")
        for t in ("", "a.b.c", "!!!"):
            with self.assertRaises(TokenError):
                verify(t, "")


if __name__ == "__main__":
    unittest.main()
