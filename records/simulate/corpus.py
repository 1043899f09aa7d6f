"""The world the events come from: locales, names' transliteration, places, pages, service
numbers, consent texts, user agents and transcript lines. Static data only; none of it
identifies a real person.
"""

from __future__ import annotations

from collections.abc import Mapping

from records.simulate.model import *  # noqa: F403

# ---- the world the events come from ---------------------------------------------------


def _lines(block: str) -> tuple[str, ...]:
    """A vocabulary written one item per line."""
    return tuple(line.strip() for line in block.strip().splitlines() if line.strip())


# locale, weight, (phone region, weight) choices, free-mail domains, chat language
LOCALES: tuple[tuple[str, float, tuple[tuple[str, float], ...], tuple[str, ...], str], ...] = (
    ("fi_FI", 0.66, (("FI", 0.98), ("SE", 0.02)), ("gmail.com", "hotmail.com", "luukku.com", "suomi24.fi"), "fi"),
    ("sv_SE", 0.07, (("FI", 0.7), ("SE", 0.3)), ("gmail.com", "hotmail.com", "outlook.com", "telia.com"), "fi"),
    ("et_EE", 0.07, (("FI", 0.55), ("EE", 0.45)), ("gmail.com", "mail.ee", "hot.ee", "outlook.com"), "en"),
    ("en_GB", 0.05, (("FI", 0.5), ("GB", 0.5)), ("gmail.com", "outlook.com", "yahoo.co.uk", "icloud.com"), "en"),
    ("pl_PL", 0.05, (("FI", 0.5), ("PL", 0.5)), ("gmail.com", "wp.pl", "o2.pl", "onet.pl"), "en"),
    ("de_DE", 0.03, (("FI", 0.5), ("DE", 0.5)), ("gmail.com", "gmx.de", "web.de", "t-online.de"), "en"),
    ("lv_LV", 0.025, (("FI", 0.5), ("LV", 0.5)), ("gmail.com", "inbox.lv", "outlook.com"), "en"),
    ("lt_LT", 0.025, (("FI", 0.5), ("LT", 0.5)), ("gmail.com", "inbox.lt", "outlook.com"), "en"),
    ("ro_RO", 0.02, (("FI", 0.5), ("RO", 0.5)), ("gmail.com", "yahoo.com", "outlook.com"), "en"),
)
# Mobile numbers: country code, national prefixes, digits after the prefix.
MOBILE: Mapping[str, tuple[str, tuple[str, ...], int]] = {
    "FI": ("358", ("40", "41", "44", "45", "46", "50"), 7),
    "SE": ("46", ("70", "72", "73", "76"), 7),
    "EE": ("372", ("5",), 7),
    "GB": ("44", ("7700", "7911", "7412", "7507"), 6),
    "PL": ("48", ("50", "51", "53", "60", "66", "69", "78", "79"), 7),
    "DE": ("49", ("151", "160", "170", "176"), 8),
    "LV": ("371", ("2",), 7),
    "LT": ("370", ("6",), 7),
    "RO": ("40", ("72", "73", "74", "75"), 7),
}
ASCII = str.maketrans({"ø": "o", "æ": "ae", "ß": "ss", "ł": "l", "đ": "d", "œ": "oe", "þ": "th", " ": "", "'": ""})
# name, latitude, longitude, weight: where precise locations come from
CITIES: tuple[tuple[str, float, float, float], ...] = tuple(
    (name, float(lat), float(lon), float(weight))
    for name, lat, lon, weight in (
        line.split()
        for line in _lines("""
            Helsinki 60.1699 24.9384 0.25
            Espoo 60.2055 24.6559 0.10
            Vantaa 60.2934 25.0378 0.10
            Tampere 61.4978 23.7610 0.10
            Turku 60.4518 22.2666 0.08
            Oulu 65.0121 25.4651 0.07
            Jyväskylä 62.2426 25.7473 0.05
            Lahti 60.9827 25.6612 0.05
            Kuopio 62.8924 27.6770 0.05
            Pori 61.4851 21.7974 0.04
            Joensuu 62.6010 29.7636 0.04
            Vaasa 63.0951 21.6165 0.04
            Seinäjoki 62.7903 22.8403 0.03
        """)
    )
)
CUSTOMER_TITLES = _lines("""
    HR-päällikkö
    Henkilöstöpäällikkö
    Tuotantopäällikkö
    Varastopäällikkö
    Toimitusjohtaja
    Työnjohtaja
    Rekrytointiasiantuntija
    Ostopäällikkö
    Logistiikkapäällikkö
    Ravintolapäällikkö
    Operations Manager
    HR Business Partner
    Site Manager
""")
SITE = "https://www.henkilostopalvelu.example"
PAGES = _lines("""
    /
    /avoimet-tyopaikat
    /avoimet-tyopaikat/varastotyontekija-vantaa
    /avoimet-tyopaikat/trukinkuljettaja-tampere
    /avoimet-tyopaikat/siivooja-helsinki
    /avoimet-tyopaikat/kokki-turku
    /avoimet-tyopaikat/lahihoitaja-espoo
    /yrityksille
    /yrityksille/henkilostovuokraus
    /yrityksille/pyyda-tarjous
    /tyontekijoille/mystaff
    /tyontekijoille/palkanmaksu
    /tyontekijoille/usein-kysyttya
    /yhteystiedot
    /en/jobs
    /en/for-employers
    /sv/lediga-jobb
""")
REFERRERS = _lines("""
    https://www.google.com/
    https://www.google.fi/
    https://www.bing.com/
    https://duckduckgo.com/
    https://l.facebook.com/
    https://www.linkedin.com/
    https://tyomarkkinatori.fi/
    https://duunitori.fi/
    https://tyopaikat.oikotie.fi/
""")
# customer service (most calls), myStaff support, sales, the free number
SERVICE_NUMBERS = ("+358206341100",) * 3 + ("+358206341200", "+358206341300", "+358800123456")
OUTBOUND_NUMBER = "+358206341000"
APP_VERSIONS = ("4.6.2", "4.7.0", "4.8.1", "4.9.3", "4.10.0", "4.11.2", "4.12.1", "5.0.0", "5.1.1")
BANNER_VERSIONS = ("cookie-banner:v5", "cookie-banner:v6", "cookie-banner:v7")
CONSENT_TEXTS = ("contact-details-v2", "contact-details-v3")
# (functional, analytics, marketing): every combination occurs; most visitors take all or nothing.
COOKIE_COMBOS: tuple[tuple[tuple[bool, bool, bool], float], ...] = (
    ((True, True, True), 0.36),
    ((False, False, False), 0.26),
    ((True, False, False), 0.12),
    ((True, True, False), 0.12),
    ((False, True, False), 0.04),
    ((False, False, True), 0.03),
    ((True, False, True), 0.04),
    ((False, True, True), 0.03),
)
CONSENT_CHANNELS = (("WEB_CHAT", 0.35), ("MYSTAFF_APP", 0.25), ("PHONE", 0.15), ("CONTACT_FORM", 0.15), ("DPO", 0.1))
CONSENT_PURPOSES = (("CONTACT_DETAILS", 0.55), ("CALL_RECORDING", 0.15), ("SERVICE_DEVELOPMENT", 0.3))
CONSENT_SOURCES = {
    "WEB_CHAT": "web-chat",
    "MYSTAFF_APP": "mystaff-app",
    "PHONE": "pbx",
    "CONTACT_FORM": "contact-form",
    "DPO": "dpo-console",
}

# Browsers as they report themselves, with their share of visits. Placeholders: {v} Chrome,
# {f} Firefox, {s}.{m} Safari/iOS, {a} Android, {sb} Samsung Internet versions; device models.
_WEBKIT = "AppleWebKit/537.36 (KHTML, like Gecko)"
_SAFARI = "AppleWebKit/605.1.15 (KHTML, like Gecko)"
DESKTOP_AGENTS = (
    (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.30),
    (f"Mozilla/5.0 (Windows NT 10.0; Win64; x64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36 Edg/{{v}}.0.0.0", 0.12),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0", 0.05),
    (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.06),
    (f"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) {_SAFARI} Version/{{s}}.{{m}} Safari/605.1.15", 0.07),
    ("Mozilla/5.0 (X11; Linux x86_64; rv:{f}.0) Gecko/20100101 Firefox/{f}.0", 0.02),
    (f"Mozilla/5.0 (X11; Linux x86_64) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.01),
)
HANDHELD_AGENTS = (
    (
        f"Mozilla/5.0 (iPhone; CPU iPhone OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Version/{{s}}.{{m}} "
        "Mobile/15E148 Safari/604.1",
        0.18,
    ),
    (f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}) {_WEBKIT} Chrome/{{v}}.0.0.0 Mobile Safari/537.36", 0.10),
    (
        f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}) {_WEBKIT} SamsungBrowser/{{sb}}.0 Chrome/{{v}}.0.0.0 "
        "Mobile Safari/537.36",
        0.03,
    ),
    ("Mozilla/5.0 (Android {a}; Mobile; rv:{f}.0) Gecko/{f}.0 Firefox/{f}.0", 0.01),
    (
        f"Mozilla/5.0 (iPad; CPU OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Version/{{s}}.{{m}} Mobile/15E148 "
        "Safari/604.1",
        0.03,
    ),
    (f"Mozilla/5.0 (Linux; Android {{a}}; {{tablet}}) {_WEBKIT} Chrome/{{v}}.0.0.0 Safari/537.36", 0.02),
)
# The myStaff app's web views (iOS, Android), naming the app version.
APP_AGENTS = (
    f"Mozilla/5.0 (iPhone; CPU iPhone OS {{s}}_{{m}} like Mac OS X) {_SAFARI} Mobile/15E148 myStaff/{{app}}",
    f"Mozilla/5.0 (Linux; Android {{a}}; {{phone}}; wv) {_WEBKIT} Version/4.0 Chrome/{{v}}.0.0.0 "
    "Mobile Safari/537.36 myStaff/{app}",
)
PHONE_MODELS = ("SM-S918B", "SM-A546B", "SM-G991B", "Pixel 7", "Pixel 8a", "moto g54 5G", "CPH2451", "2201117TY")
TABLET_MODELS = ("SM-X710", "SM-T830", "Lenovo TB-X606F")

# Transcript lines by language and role; none holds an identifier.
LINES: Mapping[str, Mapping[str, tuple[str, ...]]] = {
    "fi": {
        "open": _lines("""
            Hei, milloin palkka maksetaan?
            Miten voin päivittää verokorttini?
            Haen kesätöitä, onko paikkoja vapaana?
            En pääse kirjautumaan myStaffiin.
            Vuoroni muuttui, keneen otan yhteyttä?
            Tarvitsisimme kolme varastotyöntekijää ensi viikolle.
            Työtodistus puuttuu, voitteko lähettää sen?
            Sairastuin, miten ilmoitan poissaolosta?
            Onko teillä töitä Tampereella?
            Haluaisin pyytää tarjouksen henkilöstövuokrauksesta.
        """),
        "follow": _lines("""
            Selvä, entä lomarahat?
            Kävin jo sovelluksessa, mutta en löydä kohtaa.
            Koskeeko tämä myös iltavuoroja?
            Milloin voisin aloittaa?
            Tarvitsetteko minulta vielä jotain?
            Okei, kiitos tiedosta.
        """),
        "close": _lines("""
            Kiitos avusta!
            Selvä, kiitos.
            Kiitos, hyvää päivänjatkoa!
        """),
        "agent_open": _lines("""
            Hei! Kiitos yhteydenotosta, autan mielelläni.
            Hei, tässä asiakaspalvelu. Tarkistan asian.
            Kiitos viestistä! Hetki, katson tilanteen.
        """),
        "agent": _lines("""
            Palkka maksetaan joka toinen perjantai.
            Voit päivittää tiedot myStaffin Profiili-sivulla.
            Välitin viestisi esihenkilöllesi.
            Lähetin ohjeet sähköpostiisi.
            Avoimet paikat löytyvät sivultamme kohdasta Avoimet työpaikat.
            Myyntimme ottaa sinuun yhteyttä vielä tänään.
            Poissaolo ilmoitetaan myStaffissa kohdassa Vuorot.
        """),
        "agent_close": _lines("""
            Onko jotain muuta, missä voin auttaa?
            Mukavaa päivänjatkoa!
        """),
        "bot": _lines("""
            Hei! Olen virtuaaliavustaja. Miten voin auttaa?
            Hei! Kerro lyhyesti, mitä asiasi koskee.
        """),
        "joined": ("Asiakaspalvelija liittyi keskusteluun.",),
    },
    "en": {
        "open": _lines("""
            Hi, when is the salary paid?
            How do I update my tax card?
            Are there any summer jobs available?
            I cannot log in to myStaff.
            My shift changed, who should I contact?
            We need three warehouse workers for next week.
            Could you send me my employment certificate?
            I am sick today, how do I report it?
        """),
        "follow": _lines("""
            OK, and what about holiday pay?
            I tried the app but cannot find it.
            Does this apply to night shifts?
            When could I start?
            Do you need anything else from me?
        """),
        "close": _lines("""
            Thanks for your help!
            Great, thank you.
            Thank you, have a nice day!
        """),
        "agent_open": _lines("""
            Hi! Thanks for reaching out, happy to help.
            Hello, customer service here. Let me check.
        """),
        "agent": _lines("""
            Salaries are paid every other Friday.
            You can update it on the Profile page in myStaff.
            I forwarded your message to your supervisor.
            I sent you the instructions by email.
            You can find open positions on our Jobs page.
            Absences are reported in myStaff under Shifts.
        """),
        "agent_close": _lines("""
            Is there anything else I can help with?
            Have a nice day!
        """),
        "bot": _lines("""
            Hi! I am the virtual assistant. How can I help?
            Hi! Tell me briefly what this is about.
        """),
        "joined": ("An agent joined the conversation.",),
    },
}
SENDERS = {"open": "VISITOR", "follow": "VISITOR", "close": "VISITOR", "bot": "BOT", "joined": "SYSTEM"}
