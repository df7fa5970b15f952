"""Amounts in minor units of an ISO 4217 currency, within limits a seller cannot get wrong."""

from __future__ import annotations

# ISO 4217 active codes and their minor-unit exponents (2 unless listed below).
_CURRENCIES = """
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD CAD CDF CHF
CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF
IDR ILS INR IRR ISK JMD KES KGS KHR KYD KZT LAK LBP LKR LRD LSL MAD MDL MKD MMK MNT MOP MRU MUR MVR MWK
MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP
SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW
ZWG
"""
_ZERO_DECIMAL = set("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF".split())
_THREE_DECIMAL = set("BHD IQD JOD KWD LYD OMR TND".split())
CURRENCIES: frozenset[str] = frozenset(_CURRENCIES.split()) | _ZERO_DECIMAL | _THREE_DECIMAL

# The most any one price, coupon or payment may be: one million in the currency's major unit
# (for zero-decimal currencies a hundred million). Far above any digital product, far below
# what any provider or an int64 column could overflow on.
MAX_MAJOR_UNITS = 1_000_000


def minor_exponent(currency: str) -> int:
    if currency in _ZERO_DECIMAL:
        return 0
    if currency in _THREE_DECIMAL:
        return 3
    return 2


def max_amount(currency: str) -> int:
    """The largest amount, in minor units, that Postsale accepts in `currency`."""
    if currency in _ZERO_DECIMAL:
        return MAX_MAJOR_UNITS * 100
    return MAX_MAJOR_UNITS * 10 ** minor_exponent(currency)


def currency_problem(currency: str) -> str | None:
    if currency not in CURRENCIES:
        return f"{currency!r} is not an ISO 4217 currency code (such as EUR or USD)."
    return None


def amount_problem(amount: int, currency: str, *, what: str = "The amount", allow_zero: bool = False) -> str | None:
    if amount < 0 or (amount == 0 and not allow_zero):
        return f"{what} must be more than 0."
    if amount > max_amount(currency):
        return f"{what} may be at most {format_money(max_amount(currency), currency)}."
    return None


def format_money(amount: int, currency: str) -> str:
    exponent = minor_exponent(currency)
    return f"{amount / 10 ** exponent:,.{exponent}f} {currency}"


def format_major(amount: int, currency: str) -> str:
    """The amount as a buyer types it back: `25.50`."""
    exponent = minor_exponent(currency)
    return f"{amount / 10 ** exponent:.{exponent}f}"


MAX_AMOUNT_TEXT = 20  # characters: "1000000.000" and spaces around it fit


class AmountError(ValueError):
    """Why the text typed is not an amount, in a sentence for whoever typed it."""


class NotAnAmount(AmountError):
    """The text is not a number at all (letters, a sign, digits other than 0-9, too long): the
    caller may say what it expected in its own words."""


def read_major(text: str, currency: str) -> int:
    """What a person typed ("25", "25.50", "25,50") in minor units, or AmountError saying why not.

    One decimal mark, a point or a comma: "10,50" and "10.50" are both 10.50 EUR. Thousands
    separators are refused, not guessed ("1,000" could be a thousand or one): spaces, apostrophes
    or two marks are refused; a currency with two decimals refuses three digits after the mark; one
    with three decimals (KWD) refuses "1,500" as ambiguous (typed "1500" or "01.500" it is not);
    one without decimals (JPY) refuses any mark."""
    cleaned = text.strip()
    exponent = minor_exponent(currency)
    example = format_major(4900 * 10 ** exponent // 100 if exponent else 4900, currency)
    if len(cleaned) > MAX_AMOUNT_TEXT:
        raise NotAnAmount(f"Enter an amount in {currency or 'the currency'}, such as {example}.")
    grouped = cleaned.replace(" ", "").replace("\u00a0", "").replace("'", "")
    # isascii: "²" and "٣" are digits to str.isdigit but not amounts
    if not grouped.isascii() or not all(c.isdigit() or c in ".," for c in grouped) \
            or not any(c.isdigit() for c in grouped):
        raise NotAnAmount(f"Enter an amount in {currency or 'the currency'}, such as {example}.")
    marks = sum(cleaned.count(mark) for mark in ".,")
    if grouped != cleaned or marks > 1:
        raise AmountError(f"“{cleaned}” has a thousands separator or more than one mark: write the amount with one "
                          f"decimal mark at most and no separator, such as {example}.")
    if marks and exponent == 0:
        raise AmountError(f"{currency} has no decimals: enter a whole amount without separators, such as {example}.")
    whole, _, fraction = cleaned.replace(",", ".").partition(".")
    if len(fraction) > exponent:
        raise AmountError(f"“{cleaned}” has {len(fraction)} decimals and {currency} has {exponent}: write "
                          f"thousands without a separator, such as 1000.")
    if exponent == 3 and len(fraction) == 3 and 0 < len(whole) <= 3 and not whole.startswith("0"):
        raise AmountError(f"“{cleaned}” could mean {whole}.{fraction} or {whole}{fraction} {currency}: write "
                          f"{whole}{fraction} for the thousands, or 0{whole}.{fraction} for the decimals.")
    return int(whole or "0") * 10 ** exponent + int(fraction.ljust(exponent, "0") or "0")


def parse_major(text: str, currency: str) -> int | None:
    """`read_major`, or None when the text is not an amount."""
    try:
        return read_major(text, currency)
    except AmountError:
        return None
