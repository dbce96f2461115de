"""The retry policy of daemon/sync/retry.py: one table of failures, then Retry-After and Backoff."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from daemon.sync.retry import (
    MAX_RETRY_AFTER_S,
    Backoff,
    BadData,
    Decision,
    Failure,
    Fatal,
    ReAuth,
    Retry,
    classify,
    parse_retry_after,
    refresh_refused,
)

NOW = 1_795_000_000.0
V2 = {"X-Supabase-Api-Version": "2024-01-01"}


def gotrue(status: int, code: str) -> Failure:
    return Failure.http(status, {**V2, "x-sb-error-code": code}, {"code": code, "message": "m"})


def postgrest(status: int, code: str, message: str = "m") -> Failure:
    body = {"code": code, "details": None, "hint": None, "message": message}
    return Failure.http(status, {"Content-Type": "application/json"}, body)


CASES: list[tuple[str, Failure, Decision]] = [
    # no response at all
    ("connect refused", Failure.network("connect"), Retry(None, "connect")),
    ("timeout", Failure.network("timeout"), Retry(None, "timeout")),
    ("connection reset", Failure.network("reset"), Retry(None, "reset")),
    # server trouble
    (
        "500 unexpected_failure",
        gotrue(500, "unexpected_failure"),
        Retry(None, "unexpected_failure"),
    ),
    ("502 proxy page", Failure.http(502, {}, b"<html>bad gateway</html>"), Retry(None, "http_502")),
    ("503 PGRST001", postgrest(503, "PGRST001"), Retry(None, "PGRST001")),
    ("503 Retry-After 7", Failure.http(503, {"Retry-After": "7"}), Retry(7.0, "http_503")),
    ("504", Failure.http(504), Retry(None, "http_504")),
    ("520 cloudflare", Failure.http(520), Retry(None, "http_520")),
    ("501 not implemented", Failure.http(501), Fatal("http_501", 501)),
    ("408 request timeout", Failure.http(408), Retry(None, "http_408")),
    # rate limits
    ("429 seconds", Failure.http(429, {"retry-after": "12"}), Retry(12.0, "http_429")),
    (
        "429 http date",
        Failure.http(429, {"Retry-After": formatdate(NOW + 30, usegmt=True)}),
        Retry(30.0, "http_429"),
    ),
    (
        "429 gotrue no header",
        gotrue(429, "over_request_rate_limit"),
        Retry(None, "over_request_rate_limit"),
    ),
    ("409 concurrent refresh", gotrue(409, "conflict"), Retry(None, "conflict")),
    # expired access token -> refresh and repeat once
    ("401 PGRST303 JWT expired", postgrest(401, "PGRST303", "JWT expired"), ReAuth()),
    ("401 PGRST301 (PostgREST <= 12.2)", postgrest(401, "PGRST301", "JWT expired"), ReAuth()),
    ("401 without body", Failure.http(401, {"WWW-Authenticate": "Bearer"}), ReAuth()),
    ("403 gotrue bad_jwt", gotrue(403, "bad_jwt"), ReAuth()),
    # refused again right after a refresh: GoTrue granted it, the session stands -> backoff
    (
        "401 again right after a refresh",
        Failure.http(401, {}, {"code": "PGRST303"}, reauthed=True),
        Retry(None, "token_rejected"),
    ),
    (
        "403 bad_jwt after a refresh",
        Failure.http(403, V2, {"code": "bad_jwt"}, reauthed=True),
        Retry(None, "token_rejected"),
    ),
    # refresh refused -> the user must log in again
    (
        "refresh_token_already_used",
        gotrue(400, "refresh_token_already_used"),
        Fatal("auth_required", 400),
    ),
    (
        "refresh_token_not_found",
        gotrue(400, "refresh_token_not_found"),
        Fatal("auth_required", 400),
    ),
    ("session_not_found on refresh", gotrue(400, "session_not_found"), Fatal("auth_required", 400)),
    ("session_not_found on /user", gotrue(403, "session_not_found"), Fatal("auth_required", 403)),
    ("session_expired", gotrue(400, "session_expired"), Fatal("auth_required", 400)),
    (
        "legacy error_code shape",
        Failure.http(400, {}, {"code": 400, "error_code": "refresh_token_not_found", "msg": "x"}),
        Fatal("auth_required", 400),
    ),
    (
        "legacy OAuth invalid_grant",
        Failure.http(
            400,
            {},
            '{"error":"invalid_grant","error_description":"Invalid Refresh Token: Already Used"}',
        ),
        Fatal("auth_required", 400),
    ),
    (
        "error code only in the header",
        Failure.http(400, {"X-Sb-Error-Code": "refresh_token_already_used"}, b""),
        Fatal("auth_required", 400),
    ),
    # other client errors: retrying cannot help
    ("invalid_credentials", gotrue(400, "invalid_credentials"), Fatal("invalid_credentials", 400)),
    (
        "legacy OAuth invalid_grant on login",
        Failure.http(
            400, {}, {"error": "invalid_grant", "error_description": "Invalid login credentials"}
        ),
        Fatal("invalid_grant", 400),
    ),
    ("403 RLS 42501", postgrest(403, "42501"), Fatal("42501", 403)),
    # the request carries a value the cloud refuses: a push is split (push_batch.Bisection)
    ("409 unique violation", postgrest(409, "23505"), BadData("23505", 409)),
    (
        "400 22P05 NUL in the JSON",
        postgrest(400, "22P05", "unsupported Unicode escape sequence"),
        BadData("22P05", 400),
    ),
    ("400 22001 value too long", postgrest(400, "22001"), BadData("22001", 400)),
    ("400 23514 check violation", postgrest(400, "23514"), BadData("23514", 400)),
    ("500 54000 too large (PostgREST: 500)", postgrest(500, "54000"), BadData("54000", 500)),
    ("413 request too large", Failure.http(413), BadData("http_413", 413)),
    ("500 XX000 internal: transient", postgrest(500, "XX000"), Retry(None, "XX000")),
    ("503 53300 too many connections", postgrest(503, "53300"), Retry(None, "53300")),
    ("not a SQLSTATE", postgrest(400, "22P05x"), Fatal("22P05x", 400)),
    ("404 PGRST202 no function", postgrest(404, "PGRST202"), Fatal("PGRST202", 404)),
    ("400 PGRST204 unknown column", postgrest(400, "PGRST204"), Fatal("PGRST204", 400)),
    (
        "non-JSON body, Proxy-Status code",
        Failure.http(400, {"Proxy-Status": "PostgREST; error=PGRST100"}, b"oops"),
        Fatal("PGRST100", 400),
    ),
    (
        "server text never becomes the reason",
        Failure.http(400, {}, {"code": "Bearer eyJhbGciOi.secret token text"}),
        Fatal("http_400", 400),
    ),
]


@pytest.mark.parametrize(("failure", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_classify(failure: Failure, expected: Decision) -> None:
    decision = classify(failure, now=NOW)
    assert (decision, type(decision)) == (expected, type(expected))


LEGACY = {"error": "invalid_grant", "error_description": "Invalid Refresh Token: Already Used"}


@pytest.mark.parametrize(
    ("failure", "refused"),
    [
        # GoTrue's answers about the token (supabase-wire.md §2.5): log in again
        (gotrue(400, "refresh_token_not_found"), True),
        (gotrue(400, "refresh_token_already_used"), True),
        (gotrue(400, "session_not_found"), True),
        (gotrue(400, "session_expired"), True),
        (gotrue(400, "validation_failed"), True),  # "Refresh token is not valid"
        (Failure.http(400, {}, LEGACY), True),
        # nothing about the token: keep the session, retry
        (Failure.http(401, {}, b"Unauthorized"), False),  # a gateway, a wrong anon key
        (Failure.http(401, {}, {"message": "Invalid API key"}), False),
        (gotrue(401, "no_authorization"), False),
        (gotrue(403, "bad_jwt"), False),
        (Failure.http(404, {}, b"<html>not found</html>"), False),
        (gotrue(409, "conflict"), False),
        (gotrue(429, "over_request_rate_limit"), False),
        (Failure.http(500, {}, {"code": "unexpected_failure"}), False),
        (Failure.http(502, {}, b"<html>bad gateway</html>"), False),
        (Failure.network("reset"), False),
    ],
)
def test_only_a_refusal_of_the_refresh_token_ends_the_session(
    failure: Failure, refused: bool
) -> None:
    assert refresh_refused(failure) is refused


def test_bad_data_is_fatal_and_its_message_is_kept_apart_from_the_reason() -> None:
    """Whatever only knows Fatal (the session's slow retry of a pull, CloudRejected) treats
    BadData so; the server's message is for a rejected change's detail, never the reason."""
    failure = postgrest(400, "22P05", "unsupported Unicode escape sequence")
    decision = classify(failure, now=NOW)
    assert isinstance(decision, Fatal) and decision.reason == "22P05"
    assert failure.error_message == "unsupported Unicode escape sequence"
    assert Failure.http(400, {}, {"message": 7}).error_message is None
    assert Failure.network("connect").error_message is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("0", 0.0),
        (" 120 ", 120.0),
        ("1.5", 1.5),
        ("-3", 0.0),
        ("nan", None),
        ("999999999", MAX_RETRY_AFTER_S),
        (formatdate(NOW + 90, usegmt=True), 90.0),
        (formatdate(NOW - 90, usegmt=True), 0.0),
        ("Sun, 06 Nov 1994 08:49:37 -0000", 0.0),  # naive (-0000) dates read as UTC
        ("soon", None),
        ("", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, now=NOW) == expected


def test_http_date_without_zone_is_utc() -> None:
    naive = formatdate(NOW + 60)  # "-0000": UTC, zone unknown -> a naive datetime
    assert naive.endswith("-0000")
    assert parse_retry_after(naive, now=NOW) == 60.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({}, "either"),
        ({"status": 500, "transport": "connect"}, "either"),
        ({"status": 999}, "status"),
        ({"transport": "dns"}, "kind"),
    ],
)
def test_failure_rejects_nonsense(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Failure(**kwargs)  # type: ignore[arg-type]


def test_failure_headers_are_case_insensitive_and_bodies_tolerant() -> None:
    failure = Failure.http(503, {"RETRY-AFTER": "3"}, b"\xff not json")
    assert failure.body is None and failure.headers == {"retry-after": "3"}
    assert Failure.http(400, {}, "[1, 2]").body is None  # JSON, but not an object
    assert classify(failure, now=NOW) == Retry(3.0, "http_503")


@pytest.mark.parametrize(
    ("attempt", "rand", "expected"),
    [
        (0, 0.0, 0.0),
        (0, 0.5, 0.25),
        (1, 0.5, 0.5),
        (3, 0.5, 2.0),
        (6, 0.5, 15.0),  # 0.5 * 64 = 32 -> capped at 30
        (10, 0.999, 29.97),
        (5000, 0.5, 15.0),  # no float overflow for absurd attempt numbers
    ],
)
def test_backoff_full_jitter(attempt: int, rand: float, expected: float) -> None:
    assert Backoff().delay(attempt, rand) == pytest.approx(expected)


def test_backoff_honours_retry_after() -> None:
    backoff = Backoff(base_s=0.5, cap_s=30.0)
    assert backoff.delay(0, 0.9, retry_after=12.0) == 12.0
    assert backoff.delay(8, 0.9, retry_after=1.0) == pytest.approx(27.0)
    assert backoff.delay_for(Retry(20.0), 0, 0.1) == 20.0
    assert backoff.delay_for(Retry(), 2, 0.5) == pytest.approx(1.0)


@pytest.mark.parametrize(("attempt", "rand"), [(-1, 0.5), (0, 1.0), (0, -0.1)])
def test_backoff_rejects_bad_arguments(attempt: int, rand: float) -> None:
    with pytest.raises(ValueError):
        Backoff().delay(attempt, rand)


def test_backoff_rejects_bad_configuration() -> None:
    with pytest.raises(ValueError):
        Backoff(base_s=0.0)
    with pytest.raises(ValueError):
        Backoff(base_s=5.0, cap_s=1.0)
