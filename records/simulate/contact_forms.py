"""Contact-form submissions of the simulated web site: who fills a form in (a recurring
person, so an erasure finds their forms too), which boxes they tick and what they write.

A form without the contact-details box ticked still arrives with the details typed now
and then (`TrafficMix.form_details_without_consent`): the streams stage must strip them,
so such events carry the DETAILS_WITHOUT_CONSENT tag like web chats.
"""

from __future__ import annotations

from records.simulate.context import SimulationContext
from records.simulate.corpus import CONSENT_TEXTS, PAGES, SITE
from records.simulate.model import (
    CONTACT_FORM_SUBMITTED,
    DETAILS_WITHOUT_CONSENT,
    FORM,
    KINDS,
    SimulatedEvent,
    from_millis,
)

FORM_NAMES = (("yhteydenotto", 0.6), ("tarjouspyynto", 0.3), ("contact-us", 0.1))
FORM_PAGES = ("/ota-yhteytta", "/yrityksille/tarjouspyynto", "/en/contact")
MESSAGES = {
    "fi": (
        "Hei, tarvitsisimme kolme varastotyöntekijää helmikuun ajaksi. Soittaisitteko?",
        "Haluaisin kuulla lisää henkilöstövuokrauksesta ravintola-alalle.",
        "Palkkalaskelmassani on virhe, pyydän yhteydenottoa.",
        "Olen kiinnostunut avoimista työpaikoista Tampereella.",
        "Pyydämme tarjousta rekrytointipalvelusta kahteen asiantuntijatehtävään.",
        "Työtodistukseni on vielä saamatta, voitteko auttaa?",
    ),
    "en": (
        "Hello, we need temporary warehouse staff for two months. Please contact me.",
        "I would like to know more about your recruitment services.",
        "Could someone call me about the open positions in Helsinki?",
        "My payslip seems to be missing the evening shift bonus.",
    ),
}


def contact_form(sim: SimulationContext, at: int) -> SimulatedEvent:
    """One submission at `at` (epoch ms)."""
    rng, mix = sim.rng, sim.mix
    person = sim.person()
    language = "fi" if person.language == "fi" else "en"
    consent = rng.random() < mix.form_contact_consent
    details = consent or rng.random() < mix.form_details_without_consent
    record = sim.envelope(at, "web-forms", lag_ms=(200, 5_000))
    form_name = rng.choices([n for n, _ in FORM_NAMES], [w for _, w in FORM_NAMES])[0]
    page = FORM_PAGES[[n for n, _ in FORM_NAMES].index(form_name)] if rng.random() < 0.8 else rng.choice(PAGES)
    record.update(
        submission_id=sim.uuid(),
        form_name=form_name,
        submitted_at=from_millis(at - sim.between(0, 2_000)),
        name=None,
        email=None,
        phone=None,
        company_name=None,
        message=rng.choice(MESSAGES[language]),
        page_url=SITE + page,
        contact_consent=consent,
        contact_consent_text_id=f"form-{sim.versioned(at, CONSENT_TEXTS)}-{language}" if consent else None,
        marketing_consent=consent and rng.random() < mix.form_marketing_consent,
        user_agent=sim.user_agent(person.device),
    )
    tags: tuple[str, ...] = ()
    if details:
        record.update(name=person.name, email=person.email)
        if rng.random() < 0.6:
            record["phone"] = person.phone
        if person.company is not None:
            record["company_name"] = person.company
        if not consent:
            tags = (DETAILS_WITHOUT_CONSENT,)
    return SimulatedEvent(FORM, KINDS[FORM][1] or "", CONTACT_FORM_SUBMITTED, record, tags=tags)
