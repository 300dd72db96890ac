import os
import tempfile
import unittest

from confparse import ConfigError, parse
from loader import load


class ParseTests(unittest.TestCase):
    def test_simple(self):
        self.assertEqual(parse("name = demo\nport=8080\n"), {"name": "demo", "port": "8080"})

    def test_comments_and_blank_lines(self):
        self.assertEqual(parse("# comment\n\n  debug = true  \n"), {"debug": "true"})

    def test_value_containing_equals(self):
        text = "url = https://example.com/search?q=demo&page=2\n"
        self.assertEqual(parse(text), {"url": "https://example.com/search?q=demo&page=2"})

    def test_base64_padding(self):
        self.assertEqual(parse("token = YWJjZA==\n"), {"token": "YWJjZA=="})

    def test_missing_equals(self):
        with self.assertRaises(ConfigError):
            parse("just some words\n")

    def test_empty_key(self):
        with self.assertRaises(ConfigError):
            parse(" = value\n")


class LoadTests(unittest.TestCase):
    def test_load_with_defaults(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "app.conf")
            with open(path, "w", encoding="utf-8") as fh:
                fh.write("dsn = postgres://db/app?sslmode=require\n")
            config = load(path, defaults={"dsn": "sqlite://", "workers": "2"})
        self.assertEqual(config, {"dsn": "postgres://db/app?sslmode=require", "workers": "2"})


if __name__ == "__main__":
    unittest.main()
