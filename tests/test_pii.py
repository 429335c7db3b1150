"""The one PII masker (tools/data/pii.py): a table of strings with the expected output, the same
result in Python and in DuckDB SQL, and the agent's view of tool results keeping ids intact."""

import duckdb
import pytest

from tools.data.pii import luhn_ok, mask_pii, mask_sql, register_sql

# (input, expected output). Ids and timestamps stay; real phones, Luhn-valid cards and emails go.
TEST_CASES = [
    # ids and numbers a shop writes: never PII
    ("order 1511544070 arrived", "order 1511544070 arrived"),
    ("user 12345678", "user 12345678"),
    ("ts 1511544070123 (ms)", "ts 1511544070123 (ms)"),
    ("upc 123456789012 and ean 0123456789123", "upc 123456789012 and ean 0123456789123"),
    ("2024-05-01 10:00:00", "2024-05-01 10:00:00"),
    ("order 12 of 3 jars, 2012-10-12, 100g", "order 12 of 3 jars, 2012-10-12, 100g"),
    ("sold 1 000 000 units, 1.234.567 in EU", "sold 1 000 000 units, 1.234.567 in EU"),
    ("from 192.168.100.200", "from 192.168.100.200"),
    ("call 555 1234 (a local number has too few digits)", "call 555 1234 (a local number has too few digits)"),
    # cards: Luhn-valid numbers of the major networks only
    ("visa 4111 1111 1111 1111 ok", "visa [CARD] ok"),
    ("mc 5555-5555-5555-4444", "mc [CARD]"),
    ("amex 378282246310005", "amex [CARD]"),
    ("unionpay 6200000000000005", "unionpay [CARD]"),
    ("not luhn 4111111111111112", "not luhn 4111111111111112"),
    # phones of several countries: separators or a leading +
    ("call +1 415-555-0134 now", "call [PHONE] now"),
    ("call (555) 123-4567", "call [PHONE]"),
    ("us 555-123-4567", "us [PHONE]"),
    ("uk 020 7946 0958 or +44 20 7946 0958", "uk [PHONE] or [PHONE]"),
    ("fr 01 23 45 67 89 / +33 1 23 45 67 89", "fr [PHONE] / [PHONE]"),
    ("de +49 30 12345678 or 030 12345678", "de [PHONE] or [PHONE]"),
    ("jp 03-1234-5678", "jp [PHONE]"),
    # Chinese numbers: mobiles with or without separators, landlines with the area code
    ("电话13800138000", "电话[PHONE]"),
    ("手机 138 0013 8000，座机 010-65529988", "手机 [PHONE]，座机 [PHONE]"),
    ("+86 138 0013 8000", "[PHONE]"),
    ("+8613800138000", "[PHONE]"),
    # emails
    ("mail bob.smith@shop.co.uk now", "mail [EMAIL] now"),
    ("联系 wang.li@example.cn 谢谢", "联系 [EMAIL] 谢谢"),
    ("x@y.io and 555-123-4567", "[EMAIL] and [PHONE]"),
]


@pytest.mark.parametrize("text,expected", TEST_CASES)
def test_table(text, expected):
    masked, count = mask_pii(text)
    assert masked == expected
    assert count == sum(expected.count(t) for t in ("[EMAIL]", "[PHONE]", "[CARD]"))


def test_sql_masks_exactly_like_python():
    con = duckdb.connect()
    register_sql(con)
    register_sql(con)  # twice is fine: the importer calls it for every file
    masked, count = mask_sql("t")
    texts = [t for t, _ in TEST_CASES] + ["no pii here", ""]
    rows = con.execute(f"SELECT {masked}, {count} FROM (SELECT unnest($texts) AS t)", {"texts": texts}).fetchall()
    assert [(m, n) for m, n in rows] == [mask_pii(t) for t in texts]
    assert con.execute(f"SELECT {masked} FROM (SELECT NULL::VARCHAR AS t)").fetchone() == (None,)


def test_luhn():
    assert luhn_ok("4111111111111111") and luhn_ok("79927398713")
    assert not luhn_ok("4111111111111112") and not luhn_ok("79927398710")


def test_agent_view_keeps_ids_and_masks_only_free_text():
    from assistant.agent.untrusted import mask_pii as agent_mask
    from assistant.agent.untrusted import sanitize_result

    result = {"order_id": "1511544070", "user_id": "12345678", "ts": "2017-11-24 10:00:00.123",
              "ts_ms": 1511544070123, "item_id": "4111111111111111",
              "quotes": [{"review_id": "r1", "text": "call me: +1 415-555-0134, order 1511544070"}]}
    clean, found = sanitize_result(result)
    assert {k: clean[k] for k in ("order_id", "user_id", "ts", "ts_ms", "item_id")} == \
        {k: result[k] for k in ("order_id", "user_id", "ts", "ts_ms", "item_id")}
    assert clean["quotes"][0]["review_id"] == "r1"
    assert clean["quotes"][0]["text"] == "«call me: [PHONE], order 1511544070»"
    assert found == ["call me: [PHONE], order 1511544070"]
    # one masker: the agent and the importer agree on every string of the table
    assert [agent_mask(t) for t, _ in TEST_CASES] == [e for _, e in TEST_CASES]
