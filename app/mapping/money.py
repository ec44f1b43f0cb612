"""Money parameter values (a buyer's ``spending_limit``): exact decimals in a currency.

An amount is kept as the decimal text the admin wrote (``"5000.00"``), never as a binary
float: API bodies and rule files read JSON/TOML/YAML numbers as :class:`~decimal.Decimal`
(app/json_input.py, app/mapping/ruleset.py), so ``0.1`` stays ``0.1`` and
``12345678901.99`` keeps its cents. The canonical form is plain notation (``1e3`` is
``"1000"``), with the places written kept (``"500.00"``).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from app.errors import InvalidInput

CURRENCY_LENGTH = 3
# Below one trillion: a spending limit beyond any order, and at most 15 significant digits
# with 3 places, so a portal that reads the string into a double still gets it exactly.
MAX_INTEGER_DIGITS = 12
# ISO 4217 minor units of the currencies that do not have 2 (any other code: 2).
MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(("BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF",
                     "UGX", "UYI", "VND", "VUV", "XAF", "XOF", "XPF"), 0),
    **dict.fromkeys(("BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"), 3),
    **dict.fromkeys(("CLF", "UYW"), 4),
}
# ISO 4217's current codes with a minor unit (List One), funds included: a typo ("EUD") or
# a code the standard withdrew (HRK) is no currency the portal can charge in. Gold, SDRs,
# the test code XTS and XXX have no minor unit ("N.A."): no amount is written in them.
_LIST_ONE = """
    AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD
    BTN BWP BYN BZD CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK DJF DKK DOP
    DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR
    IQD IRR ISK JMD JOD JPY KES KGS KHR KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD
    MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB
    PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD
    SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX USD USN UYI UYU UYW UZS
    VED VES VND VUV WST XAF XCD XCG XOF XPF YER ZAR ZMW ZWG ZWL
"""
CURRENCIES: frozenset[str] = frozenset(_LIST_ONE.split())
# ASCII digits only: ``\d`` and Decimal take any script's, and an Arabic-Indic zero (U+0660)
# looks like a dot, so "1\u066000" read as 1.00 by a reviewer was 1000.
_NUMBER = re.compile(r"-?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\Z", re.ASCII)


def minor_units(currency: str) -> int:
    """Decimal places the currency allows (ISO 4217's minor unit; 2 unless listed)."""
    return MINOR_UNITS.get(currency, 2)


def check_money(value: Any, where: str) -> dict[str, str]:
    """``{amount, currency}`` validated and canonical, or InvalidInput naming the field.

    The currency is a current ISO 4217 code (``CURRENCIES``); the amount is a string or
    an exact JSON number, zero or more (``-0`` is ``0``), finite,
    below 10^12, with no more places than the currency's minor unit.
    """
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        raise InvalidInput(f"{where}: expected a money value {{amount, currency}}, got "
                           f"{shown(value)}", field=where)
    currency = value["currency"]
    if not (isinstance(currency, str) and len(currency) == CURRENCY_LENGTH
            and currency.isascii() and currency.isalpha() and currency.isupper()):
        raise InvalidInput(f"{where}.currency: must be an ISO 4217 code such as EUR",
                           field=f"{where}.currency")
    if currency not in CURRENCIES:
        raise InvalidInput(f"{where}.currency: {currency} is not a current ISO 4217 currency "
                           "code (such as EUR, USD, JPY)", field=f"{where}.currency")
    return {"amount": _amount(value["amount"], currency, f"{where}.amount"),
            "currency": currency}


def _amount(raw: Any, currency: str, where: str) -> str:
    amount = _decimal(raw, where)
    if not amount.is_finite():
        raise InvalidInput(f"{where}: must be a finite number, not {raw!s}", field=where)
    if amount.is_signed() and not amount.is_zero():
        raise InvalidInput(f"{where}: must not be negative", field=where)
    if not amount.is_zero() and amount.adjusted() >= MAX_INTEGER_DIGITS:
        raise InvalidInput(f"{where}: must be less than 1,000,000,000,000", field=where)
    places = minor_units(currency)
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # finite
    if -exponent > places:
        raise InvalidInput(f"{where}: {currency} allows at most {places} decimal places",
                           field=where)
    return format(abs(amount), "f")  # abs: -0 and -0.00 are 0 and 0.00


def _decimal(raw: Any, where: str) -> Decimal:
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, int) and not isinstance(raw, bool):
        return Decimal(raw)
    if isinstance(raw, float):  # only from Python callers: its shortest exact spelling
        return Decimal(repr(raw))
    if isinstance(raw, str) and raw.strip().lower().lstrip("+-") in ("nan", "snan", "inf",
                                                                       "infinity"):
        return Decimal(raw.strip())
    if not isinstance(raw, str) or not _NUMBER.match(raw):
        raise InvalidInput(f"{where}: must be a decimal number such as \"1000.00\", got "
                           f"{shown(raw)}", field=where)
    try:
        return Decimal(raw)
    except InvalidOperation:  # an exponent past what decimal holds (1e999999999999999999)
        raise InvalidInput(f"{where}: has an exponent out of range", field=where) from None


def mixed_currencies(amounts: Mapping[str, Any], defaults: Collection[str] = ()) -> str | None:
    """None when the money values ``amounts`` (by parameter name) share one currency; else
    what differs, in name order (``spending_limit in USD, approval_threshold in EUR (the
    role's default)``; ``defaults``: the names the role's defaults gave).

    One grant's amounts are compared with each other by the portal (an order above the
    buyer's approval_threshold needs approval, one above its spending_limit is refused):
    amounts in two currencies cannot be compared without an exchange rate Roster does not
    have, so a rule giving a grant two is refused rather than left for the portal to guess.
    """
    currencies = {name: value["currency"] for name, value in amounts.items()
                  if isinstance(value, dict) and "currency" in value}
    if len(set(currencies.values())) <= 1:
        return None
    return ", ".join(f"{name} in {currency}" + (" (the role's default)" if name in defaults
                                                 else "")
                     for name, currency in sorted(currencies.items(),
                                                  key=lambda item: (item[0] in defaults,
                                                                    item[0])))


def shown(value: Any) -> str:
    """A value for an error message: short, and never a huge expansion."""
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 40 else text[:40] + "..."
