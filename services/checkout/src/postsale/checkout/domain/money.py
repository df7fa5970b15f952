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


def parse_major(text: str, currency: str) -> int | None:
    """What a buyer typed ("25", "25.50", "1,000") in minor units; None when it is not an amount."""
    cleaned = text.strip().replace(",", "").replace(" ", "")
    if not cleaned or len(cleaned) > 20:
        return None
    whole, _, fraction = cleaned.partition(".")
    exponent = minor_exponent(currency)
    if not whole.isdigit() and whole != "" or (fraction and not fraction.isdigit()) or len(fraction) > exponent:
        return None
    return int(whole or "0") * 10 ** exponent + int((fraction or "0").ljust(exponent, "0") or "0")
