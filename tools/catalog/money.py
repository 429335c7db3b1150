"""The shop's currency: an ISO 4217 code, checked, and how money is written in tool results.

Usage:
    code = check_currency("usd")      # -> "USD"; "dollars" raises ValueError naming the fix
    money(12.345, "USD")              # -> "12.35 USD"
"""

from __future__ import annotations

# Active ISO 4217 alphabetic codes (the standard's list of current currencies and funds).
ISO_4217 = frozenset("""
AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP
GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW
KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN
NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL
SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS VED VES
VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
""".split())
DEFAULT_CURRENCY = "USD"  # CDNOW and the demo shop are priced in US dollars


def check_currency(code: str) -> str:
    """The upper-cased ISO 4217 code, or ValueError saying what to set instead."""
    text = str(code).strip().upper()
    if text not in ISO_4217:
        raise ValueError(f"currency {code!r} is not an ISO 4217 code: set SHOPSIGHT_CURRENCY to a three-letter "
                         "code such as USD, EUR, GBP, CNY or JPY")
    return text


def money(amount: float | None, currency: str) -> str | None:
    """`12.35 USD` (two decimals), or None for a missing amount."""
    return None if amount is None else f"{float(amount):,.2f} {currency}"
