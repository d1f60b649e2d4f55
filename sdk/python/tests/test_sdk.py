"""Tests of `sluice_sdk` outside a component: `cd sdk/python && python3 -m unittest -v`.

`test_fallback_matches_the_generated_bindings` also generates the real bindings with
componentize-py (when it is installed) and checks that the stand-ins have the same shape.
"""

import dataclasses
import enum
import importlib
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import sluice_sdk as sluice
from sluice_sdk import _fallback, _wit, http, lookup, recipients
from sluice_sdk.testing import FakeMessage, context

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WIT = os.path.normpath(os.path.join(HERE, "..", "..", "wit", "released", "sluice-rules-0.2.1.wit"))


class ActionsTest(unittest.TestCase):
    def test_constructors_build_the_wit_variants(self):
        self.assertEqual(sluice.add_header("X-A", "1"),
                         sluice.types.Action_AddHeader(sluice.Header("X-A", "1")))
        self.assertEqual(sluice.reject("no"),
                         sluice.types.Action_Bounce(sluice.Bounce(550, "5.7.1", "no")))
        self.assertEqual(sluice.add_recipients(("a@x.test",)).value, ["a@x.test"])
        self.assertEqual(sluice.banner_top("t").value.position, sluice.Position.TOP)
        self.assertEqual(sluice.banner_bottom("t").value.position, sluice.Position.BOTTOM)
        self.assertEqual(sluice.banner("t", "<b>t</b>").value.html, "<b>t</b>")
        self.assertIsInstance(sluice.drop(), sluice.ACTION_TYPES)
        self.assertIsInstance(sluice.stop(), sluice.ACTION_TYPES)
        self.assertEqual(sluice.replace_part(2, "removed"),
                         sluice.types.Action_ReplacePart(sluice.PartReplacement(2, "removed")))
        self.assertIsInstance(sluice.replace_part(0, "x"), sluice.ACTION_TYPES)
        for bad in (-1, 1.5, True, "2", 2**32):
            with self.assertRaises(TypeError):
                sluice.replace_part(bad, "x")

    def test_verdicts(self):
        self.assertTrue(sluice.failed(sluice.Verdict.FAIL))
        self.assertFalse(sluice.failed(sluice.Verdict.GRAY))
        self.assertTrue(sluice.passed(sluice.Verdict.PASS))
        self.assertEqual(sluice.verdict_name(sluice.Verdict.PROCESSING_FAILED), "processing-failed")


class AddressTest(unittest.TestCase):
    def test_splits_at_the_last_at(self):
        self.assertEqual(sluice.domain_of("ann@example.com"), "example.com")
        self.assertEqual(sluice.domain_of(" <ann@Example.com.> "), "Example.com")
        self.assertEqual(sluice.domain_of('"a@b"@example.com'), "example.com")
        self.assertEqual(sluice.local_part('"a@b"@example.com'), '"a@b"')
        self.assertIsNone(sluice.domain_of("ann"))
        self.assertIsNone(sluice.domain_of("ann@"))
        self.assertIsNone(sluice.local_part("@example.com"))

    def test_domains_include_subdomains(self):
        internal = ["example.com"]
        self.assertTrue(sluice.is_in_domains("Ann@Mail.Example.com", internal))
        self.assertFalse(sluice.is_in_domains("eve@notexample.com", internal))
        for entry in ("@example.com", ".example.com", "*.example.com", "EXAMPLE.COM."):
            self.assertTrue(sluice.is_domain_in("a.example.com", [entry]), entry)
        self.assertFalse(sluice.is_domain_in("example.com", ["", "*."]))
        self.assertFalse(sluice.is_in_domains(None, internal))
        self.assertEqual(sluice.ascii_lower("ÀBC"), "Àbc")


class ConfigTest(unittest.TestCase):
    DEFAULTS = {"tag": "[x]", "n": 3, "on": False, "words": sluice.list_of(str), "any": None}

    def test_defaults_and_values(self):
        c = sluice.parse_config("", self.DEFAULTS)
        self.assertEqual((c.tag, c.n, c.on, c.words, c.any), ("[x]", 3, False, [], None))
        c = sluice.parse_config('{"tag": "t", "words": ["a"], "any": {"k": 1}}', self.DEFAULTS)
        self.assertEqual((c.tag, c.words, c["any"]), ("t", ["a"], {"k": 1}))
        # Defaults are copies.
        c.words.append("b")
        self.assertEqual(sluice.parse_config("{}", self.DEFAULTS).words, [])

    def test_errors_name_the_key(self):
        for text, expected in [
            ('{"tga": 1}', "unknown field `tga`, expected one of `tag`, `n`"),
            ('{"tag": 1}', "`tag`: expected a string, got 1"),
            ('{"n": true}', "`n`: expected an integer"),
            ('{"words": ["a", 2]}', "`words`[1]: expected a string"),
            ('[1]', "expected a table"),
            ('{"tag": ', "invalid JSON"),
        ]:
            with self.assertRaises(sluice.ConfigError) as caught:
                sluice.parse_config(text, self.DEFAULTS)
            self.assertIn(expected, str(caught.exception), text)
        with self.assertRaisesRegex(sluice.ConfigError, "takes no config"):
            sluice.parse_config('{"a": 1}', {})
        with self.assertRaisesRegex(sluice.ConfigError, "missing field `to`"):
            sluice.parse_config("{}", {"to": sluice.required(str)})


class Tagger(sluice.Rule):
    defaults = {"tag": "[ext]"}

    def check(self, config):
        return "`tag` must not be empty" if not config.tag else None

    def evaluate(self, msg, ctx, config):
        if msg.subject() == "boom":
            raise ValueError("boom")
        if msg.subject() == "later":
            raise sluice.RuleFailure("try later", temporary=True)
        if msg.subject() == "junk":
            return ["not an action"]
        recipients.discard("x@example.com")
        return [sluice.prefix_subject(config.tag)]


class LookupTest(unittest.TestCase):
    def test_the_double_answers_refuses_and_fails(self):
        lookup.clear()
        lookup.set("aliases", "info@x.test", '{"to":["a@x.test"]}')
        self.assertEqual(lookup.get("aliases", "info@x.test"), '{"to":["a@x.test"]}')
        self.assertIsNone(lookup.get("aliases", "nobody@x.test"))
        with self.assertRaises(sluice.RuleFailure) as caught:
            lookup.get("other", "k")
        self.assertFalse(caught.exception.temporary)
        lookup.fail("aliases", sluice.RuleFailure("down", temporary=True))
        with self.assertRaises(sluice.RuleFailure) as caught:
            lookup.get("aliases", "info@x.test")
        self.assertTrue(caught.exception.temporary)
        self.assertEqual(len(lookup.take_asked()), 4)
        lookup.clear()


class HttpTest(unittest.TestCase):
    def setUp(self):
        http.clear()

    tearDown = setUp

    def test_the_double_answers_by_longest_prefix_and_refuses_the_rest(self):
        http.respond("https://c.internal/", 200, "generic")
        http.respond("https://c.internal/v1/score", 200, '{"spam":true}',
                     [("content-type", "application/json")])
        http.fail("https://slow.internal/", sluice.RuleFailure("timed out", temporary=True))
        r = http.post_json("https://c.internal/v1/score", "{}")
        self.assertIsInstance(r, http.Response)
        self.assertEqual((r.status, r.text()), (200, '{"spam":true}'))
        self.assertIsInstance(r.body, bytes)
        self.assertEqual(r.header("Content-Type"), "application/json")
        self.assertIsNone(r.header("x-missing"))
        self.assertEqual(http.get("https://c.internal/other").text(), "generic")
        with self.assertRaises(sluice.RuleFailure) as caught:
            http.get("https://slow.internal/x")
        self.assertTrue(caught.exception.temporary)
        with self.assertRaises(sluice.RuleFailure) as caught:
            http.get("https://elsewhere/")
        self.assertFalse(caught.exception.temporary)
        self.assertIn("not granted", caught.exception.message)
        sent = http.take_sent()
        self.assertEqual(len(sent), 4)
        self.assertEqual((sent[0].method, sent[0].url), ("POST", "https://c.internal/v1/score"))
        self.assertEqual(sent[0].body, b"{}")
        self.assertEqual(sent[0].headers, [("Content-Type", "application/json")])
        self.assertEqual((sent[1].method, sent[1].body), ("GET", None))
        self.assertEqual(http.take_sent(), [])
        http.clear()
        with self.assertRaisesRegex(sluice.RuleFailure, "not granted"):
            http.get("https://c.internal/")

    def test_send_takes_pairs_or_a_dict_and_str_or_bytes(self):
        http.respond("http://svc/", 503, b"h\xffi")
        http.respond("http://svc/", 202, "the later of two equal prefixes wins")
        r = http.send(http.Request("PUT", "http://svc/x", {"X-A": 1}, "h\u00e9"))
        self.assertEqual(r.status, 202)
        self.assertEqual(http.take_sent(),
                         [http.Request("PUT", "http://svc/x", [("X-A", "1")], "hé".encode())])
        http.clear()
        http.respond("http://svc/", 503, b"h\xffi")
        self.assertEqual(http.get("http://svc/").text(), "h\ufffdi")
        http.post_json("http://svc/j", {"a": [1]})
        self.assertEqual(http.take_sent()[1].body, b'{"a": [1]}')
        with self.assertRaises(TypeError):
            http.send(http.Request("GET", ""))
        with self.assertRaises(TypeError):
            http.send(http.Request("GET", "http://svc/", [("a",)]))
        with self.assertRaises(TypeError):
            http.send(http.Request("GET", "http://svc/", body=3))
        own = http.Response(200, [("Set-Cookie", "a"), ("set-cookie", "b")], b"x")
        self.assertEqual((own.header("SET-COOKIE"), own.text()), ("a", "x"))

    def test_a_failed_call_propagates_as_the_rule_error(self):
        class Classify(sluice.Rule):
            def evaluate(self, msg, ctx, config):
                if '"spam":true' in http.post_json("https://c.internal/", "{}").text():
                    return [sluice.file_into("Junk")]
                return []

        world = sluice.export(Classify)()
        msg, ctx = FakeMessage([("Subject", "hi")]), context()
        http.respond("https://c.internal/", 200, '{"spam":true}')
        self.assertEqual(world.evaluate(msg, ctx), [sluice.file_into("Junk")])
        http.fail("https://c.internal/", sluice.RuleFailure("timed out", temporary=True))
        with self.assertRaises(sluice.Err) as caught:
            world.evaluate(msg, ctx)
        self.assertEqual((caught.exception.value.message, caught.exception.value.temporary),
                         ("timed out", True))


class ExportTest(unittest.TestCase):
    def setUp(self):
        self.world = sluice.export(Tagger)()

    def evaluate(self, subject, config="{}"):
        return self.world.evaluate(FakeMessage([("Subject", subject)]), context(config=config))

    def test_ok_and_recorded_requests(self):
        recipients.take_recorded()
        self.assertEqual(self.evaluate("hi"), [sluice.prefix_subject("[ext]")])
        self.assertEqual(recipients.take_recorded(), [("discard", "x@example.com")])

    def test_errors_become_rule_errors(self):
        for subject, config, message, temporary in [
            ("hi", '{"tag": ""}', "invalid config: `tag` must not be empty", False),
            ("later", "{}", "try later", True),
            ("boom", "{}", "rule raised ValueError: boom", False),
            ("junk", "{}", "rule raised TypeError: evaluate returned str at index 0", False),
        ]:
            with self.assertRaises(sluice.Err) as caught:
                self.evaluate(subject, config)
            error = caught.exception.value
            self.assertIn(message, error.message, subject)
            self.assertEqual(error.temporary, temporary, subject)

    def test_the_config_is_parsed_once_per_instance(self):
        checks = []

        class Counting(Tagger):
            def check(self, config):
                checks.append(config)
                return None

        world = sluice.export(Counting)()
        for config in ['{"tag": "[a]"}', '{"tag": "[a]"}', '{"tag": "[b]"}']:
            world.evaluate(FakeMessage([("Subject", "hi")]), context(config=config))
        self.assertEqual([c.tag for c in checks], ["[a]", "[b]"])

    def test_validate_config(self):
        self.world.validate_config("")
        with self.assertRaises(sluice.Err) as caught:
            self.world.validate_config('{"tga": "x"}')
        self.assertIn("unknown field `tga`", caught.exception.value)


class ContextTest(unittest.TestCase):
    def test_each_field_is_asked_of_the_host_on_first_use_once(self):
        handle = context(domain="x.test", recipients=["a@x.test"], spf="fail", config={"k": 1})
        ctx = sluice.Context(handle)
        self.assertEqual(set(handle.reads.values()), {0})
        self.assertEqual((ctx.domain, ctx.domain), ("x.test", "x.test"))
        self.assertTrue(sluice.failed(ctx.verdicts.spf))
        self.assertIs(ctx.verdicts, ctx.verdicts)
        self.assertEqual(ctx.recipients, ["a@x.test"])
        self.assertEqual(handle.reads, {"domain": 1, "recipients": 1, "mail_from": 0,
                                        "verdicts": 1, "received_at": 0, "message_id": 0,
                                        "config": 0})
        self.assertEqual((ctx.mail_from, ctx.received_at, ctx.message_id, ctx.config),
                         ("", 0, "test", '{"k": 1}'))
        self.assertEqual(set(handle.reads.values()), {1})
        self.assertIn("domain='x.test'", repr(ctx))
        with self.assertRaises(TypeError):
            sluice.Context(None)

    def test_a_0_1_record_reads_the_same(self):
        # A rule built against WIT 0.1.5 gets the context as a record (a dataclass).
        record = dataclasses.make_dataclass("Record", [
            "domain", "recipients", "mail_from", "verdicts", "received_at", "message_id",
            "config"])("r.test", ["b@r.test"], "s@o.test", context(spf="pass").verdicts(), 7,
                       "m", "{}")
        ctx = sluice.Context(record)
        self.assertEqual((ctx.domain, ctx.recipients, ctx.received_at), ("r.test", ["b@r.test"], 7))
        self.assertTrue(sluice.passed(ctx.verdicts.spf))
        world = sluice.export(Tagger)()
        self.assertEqual(world.evaluate(FakeMessage([("Subject", "hi")]), record),
                         [sluice.prefix_subject("[ext]")])

    def test_evaluate_reads_only_what_the_rule_reads(self):
        seen = []

        class SpfOnly(sluice.Rule):
            def evaluate(self, msg, ctx, config):
                seen.append(ctx)
                return [sluice.file_into("Junk")] if sluice.failed(ctx.verdicts.spf) else []

        world = sluice.export(SpfOnly)()
        handle = context(spf="fail")
        self.assertEqual(world.evaluate(FakeMessage([]), handle), [sluice.file_into("Junk")])
        self.assertIsInstance(seen[0], sluice.Context)
        self.assertEqual({k: n for k, n in handle.reads.items() if n},
                         {"verdicts": 1, "config": 1})
        # A Context passed in is used as it is.
        ctx = sluice.Context(context(spf="pass"))
        self.assertEqual(world.evaluate(FakeMessage([]), ctx), [])
        self.assertIs(seen[1], ctx)

    def test_in_a_component_the_config_is_read_once_per_instance(self):
        checks = []

        class Counting(Tagger):
            def check(self, config):
                checks.append(config.tag)
                return super().check(config)

        saved = _wit.IN_COMPONENT
        _wit.IN_COMPONENT = True
        try:
            world = sluice.export(Counting)()
            # A config that fails is not kept: the next message asks again.
            bad = context(config={"tag": ""})
            with self.assertRaises(sluice.Err):
                world.evaluate(FakeMessage([("Subject", "hi")]), bad)
            handles = [context(config={"tag": "[w]"}) for _ in range(3)]
            for handle in handles:
                self.assertEqual(world.evaluate(FakeMessage([("Subject", "hi")]), handle),
                                 [sluice.prefix_subject("[w]")])
        finally:
            _wit.IN_COMPONENT = saved
        self.assertEqual([h.reads["config"] for h in handles], [1, 0, 0])
        self.assertEqual(checks, ["", "[w]"])


class FakeMessageTest(unittest.TestCase):
    def test_parses_an_eml(self):
        raw = (b"From: =?utf-8?q?Ann_=C3=85?= <ann@example.com>\r\nSubject: Hi\r\n"
               b"Content-Type: text/plain; charset=utf-8\r\n\r\nh\xc3\xa9llo\r\n")
        msg = FakeMessage.from_bytes(raw)
        self.assertEqual(msg.from_(), "ann@example.com")
        self.assertEqual(msg.from_name(), "Ann Å")
        self.assertEqual(msg.subject(), "Hi")
        self.assertEqual(msg.text_body(2), "h")  # cut on a character boundary
        self.assertEqual(msg.header_names(), ["From", "Subject", "Content-Type"])
        self.assertEqual(msg.size(), len(raw))


@unittest.skipUnless(shutil.which("componentize-py")
                     or os.path.exists(os.path.join(os.path.dirname(sys.executable), "componentize-py")),
                     "componentize-py is not installed")
class BindingsTest(unittest.TestCase):
    def test_fallback_matches_the_generated_bindings(self):
        tool = shutil.which("componentize-py") or os.path.join(
            os.path.dirname(sys.executable), "componentize-py")
        with tempfile.TemporaryDirectory() as out:
            subprocess.run([tool, "-d", WIT, "-w", "rule", "bindings", out], check=True,
                           capture_output=True)
            sys.path.insert(0, out)
            try:
                types = importlib.import_module("wit_world.imports.types")
                recips = importlib.import_module("wit_world.imports.recipients")
                for name in dir(types):
                    real = getattr(types, name)
                    if not isinstance(real, type) or real.__module__ != types.__name__:
                        continue
                    fake = getattr(_fallback, name, None)
                    self.assertIsNotNone(fake, f"_fallback lacks {name}")
                    if dataclasses.is_dataclass(real):
                        self.assertEqual([f.name for f in dataclasses.fields(real)],
                                         [f.name for f in dataclasses.fields(fake)], name)
                    elif issubclass(real, enum.Enum):
                        self.assertEqual([(m.name, m.value) for m in real],
                                         [(m.name, m.value) for m in fake], name)
                    elif name == "Context":  # a resource (0.2): the same getters
                        def methods(cls):
                            return sorted(m for m in vars(cls) if not m.startswith("_")
                                          and callable(getattr(cls, m)))
                        self.assertEqual(methods(real), methods(fake))
                        self.assertEqual(methods(real), sorted(fake.FIELDS))
                self.assertEqual(
                    [f.name for f in dataclasses.fields(recips.ForwardRequest)],
                    [f.name for f in dataclasses.fields(_fallback.ForwardRequest)])
                # sluice_sdk.http converts its Request/Response to and from these.
                wit_http = importlib.import_module("wit_world.imports.http")
                for name in ("Request", "Response"):
                    self.assertEqual(
                        [f.name for f in dataclasses.fields(getattr(wit_http, name))],
                        [f.name for f in dataclasses.fields(getattr(http, name))], name)
                self.assertTrue(callable(wit_http.send))
                # sluice_sdk.reply builds ReplyRequest positionally in this order.
                wit_reply = importlib.import_module("wit_world.imports.reply")
                self.assertEqual(
                    [f.name for f in dataclasses.fields(wit_reply.ReplyRequest)],
                    ["recipient", "text", "subject", "once_per_days"])
                self.assertTrue(callable(wit_reply.send))
            finally:
                sys.path.remove(out)
                for mod in [m for m in sys.modules if m.startswith("wit_world")
                            or m.startswith("componentize_py")]:
                    del sys.modules[mod]


class ReplyTest(unittest.TestCase):
    def test_the_double_keeps_what_was_asked(self):
        from sluice_sdk import reply
        reply.take_sent()
        reply.send("bob@example.com", "Away", once_per_days=7)
        reply.send("ann@example.com", "Out", subject="Away until Monday")
        self.assertEqual(reply.take_sent(), [
            ("bob@example.com", "Away", None, 7),
            ("ann@example.com", "Out", "Away until Monday", 0),
        ])
        self.assertEqual(reply.take_sent(), [])
        for bad in (-1, 1.5, True, "7"):
            with self.assertRaises(TypeError):
                reply.send("bob@example.com", "Away", once_per_days=bad)


class FlowTest(unittest.TestCase):
    def test_the_double_is_inbound_until_set(self):
        from sluice_sdk import flow

        self.assertEqual(flow.direction(), "inbound")
        self.assertFalse(flow.is_outbound())
        self.assertIsNone(flow.authenticated_sender())
        flow.set("outbound", "alice@example.com")
        try:
            self.assertTrue(flow.is_outbound())
            self.assertEqual(flow.authenticated_sender(), "alice@example.com")
            with self.assertRaises(ValueError):
                flow.set("sideways")
        finally:
            flow.set("inbound")
        self.assertIsNone(flow.authenticated_sender())


if __name__ == "__main__":
    unittest.main()
