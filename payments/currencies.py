"""What Stripe will accept as an amount in a currency, checked before an invoice exists.

An invoice that Stripe would refuse must fail when staff create it, not when
the customer tries to pay. Amounts are integers in the currency's minor units
as Stripe counts them (https://docs.stripe.com/currencies):

- zero-decimal currencies (JPY, KRW, ...) have no minor unit: 500 is ¥500;
- three-decimal currencies (BHD, JOD, KWD, OMR, TND) must end in 0;
- ISK is sent with two decimals but must be a whole krona (divisible by 100);
- at most eight digits (99,999,999), twelve for IDR;
- the minimum charge Stripe lists for the currency; where Stripe lists none,
  its minimum is the equivalent of USD 0.50 in the settlement currency, which
  depends on the account and is left to Stripe.
"""

# Stripe's presentment currencies (all ISO 4217 codes; Stripe's list is the narrower one).
SUPPORTED = frozenset(
    [
        "usd",
        "aed",
        "afn",
        "all",
        "amd",
        "ang",
        "aoa",
        "ars",
        "aud",
        "awg",
        "azn",
        "bam",
        "bbd",
        "bdt",
        "bgn",
        "bhd",
        "bif",
        "bmd",
        "bnd",
        "bob",
        "brl",
        "bsd",
        "bwp",
        "byn",
        "bzd",
        "cad",
        "cdf",
        "chf",
        "clp",
        "cny",
        "cop",
        "crc",
        "cve",
        "czk",
        "djf",
        "dkk",
        "dop",
        "dzd",
        "egp",
        "etb",
        "eur",
        "fjd",
        "fkp",
        "gbp",
        "gel",
        "gip",
        "gmd",
        "gnf",
        "gtq",
        "gyd",
        "hkd",
        "hnl",
        "htg",
        "huf",
        "idr",
        "ils",
        "inr",
        "isk",
        "jmd",
        "jod",
        "jpy",
        "kes",
        "kgs",
        "khr",
        "kmf",
        "krw",
        "kwd",
        "kyd",
        "kzt",
        "lak",
        "lbp",
        "lkr",
        "lrd",
        "lsl",
        "mad",
        "mdl",
        "mga",
        "mkd",
        "mmk",
        "mnt",
        "mop",
        "mur",
        "mvr",
        "mwk",
        "mxn",
        "myr",
        "mzn",
        "nad",
        "ngn",
        "nio",
        "nok",
        "npr",
        "nzd",
        "omr",
        "pab",
        "pen",
        "pgk",
        "php",
        "pkr",
        "pln",
        "pyg",
        "qar",
        "ron",
        "rsd",
        "rub",
        "rwf",
        "sar",
        "sbd",
        "scr",
        "sek",
        "sgd",
        "shp",
        "sle",
        "sos",
        "srd",
        "std",
        "szl",
        "thb",
        "tjs",
        "tnd",
        "top",
        "try",
        "ttd",
        "twd",
        "tzs",
        "uah",
        "ugx",
        "uyu",
        "uzs",
        "vnd",
        "vuv",
        "wst",
        "xaf",
        "xcd",
        "xof",
        "xpf",
        "yer",
        "zar",
        "zmw",
    ]
)
ZERO_DECIMAL = frozenset(
    ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
)
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])
# Minimum charge amounts Stripe lists, in minor units as sent to the API.
MINIMUM = {
    "usd": 50, "aed": 200, "aud": 50, "bgn": 100, "brl": 50, "cad": 50, "chf": 50, "czk": 1500,
    "dkk": 250, "eur": 50, "gbp": 30, "hkd": 400, "huf": 17500, "inr": 50, "jpy": 50, "mxn": 1000,
    "myr": 200, "nok": 300, "nzd": 50, "pln": 200, "ron": 200, "sek": 300, "sgd": 50, "thb": 1000,
}  # fmt: skip
MAXIMUM = {"idr": 999_999_999_999}
DEFAULT_MAXIMUM = 99_999_999


def amount_problem(amount, currency):
    """A sentence naming what is wrong with `amount` in `currency` for Stripe, or None.

    `currency` is lowercase; unknown currencies are the caller's to refuse first.
    """
    if currency in ZERO_DECIMAL:
        unit = f"whole {currency.upper()} (a zero-decimal currency)"
    else:
        unit = f"{currency.upper()} minor units"
    minimum = MINIMUM.get(currency, 1)
    maximum = MAXIMUM.get(currency, DEFAULT_MAXIMUM)
    if amount < minimum:
        return f"Stripe's smallest charge in {currency.upper()} is {minimum} ({unit}); got {amount}."
    if amount > maximum:
        return f"Stripe's largest charge in {currency.upper()} is {maximum:,} ({unit}); got {amount:,}."
    return step_problem(amount, currency)


def step_problem(amount, currency):
    """A sentence if `amount` is not in the steps Stripe takes in `currency`, or None. Refunds too: Stripe refuses
    a three-decimal refund whose last digit is not 0, and an ISK refund of a fraction of a króna."""
    if currency in THREE_DECIMAL and amount % 10:
        return f"{currency.upper()} amounts must end in 0 (Stripe takes three-decimal currencies in steps of 10)."
    if currency == "isk" and amount % 100:
        return "ISK amounts must be whole krónur (divisible by 100), as Stripe requires."
    return None


def exponent(currency):
    """Digits after the decimal point in Stripe's amounts for `currency` (0, 2 or 3)."""
    currency = currency.lower()
    if currency in ZERO_DECIMAL:
        return 0
    return 3 if currency in THREE_DECIMAL else 2


def format_amount(amount, currency):
    """Minor units as people read them: 4900 usd -> "49.00 USD", 500 jpy -> "500 JPY"."""
    digits = exponent(currency)
    value = amount / 10**digits
    return f"{value:,.{digits}f} {currency.upper()}"
