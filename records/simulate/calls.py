"""Calls of the simulated traffic: inbound and outbound call detail records (known,
unknown and withheld callers, unanswered calls) and the recordings of answered inbound
calls, some announced late, not at all, or recorded outside the call."""

from __future__ import annotations

import phonenumbers

from pipeline.topics import CALL
from records.simulate.context import SimulationContext
from records.simulate.corpus import OUTBOUND_NUMBER, SERVICE_NUMBERS
from records.simulate.model import (
    CALL_DETAIL_RECORD,
    CALL_KIND,
    CALL_RECORDING,
    NOTICE_AFTER_START,
    RECORDING,
    RECORDING_OUTSIDE_CALL,
    RECORDING_WITHOUT_NOTICE,
    WITHHELD_CALLER,
    SimulatedEvent,
    from_millis,
)


def call(sim: SimulationContext, at: int) -> list[SimulatedEvent]:
    rng, mix, world = sim.rng, sim.mix, sim.world
    tags: list[str] = []
    inbound = rng.random() >= mix.outbound
    answered = rng.random() < mix.answered
    if inbound and rng.random() < mix.withheld_caller:
        caller = "anonymous"
        tags.append(WITHHELD_CALLER)
    elif rng.random() < mix.known_caller:
        caller = sim.person().phone_e164
    else:
        region = "FI" if rng.random() < 0.85 else rng.choice(("SE", "EE", "PL", "DE", "GB"))
        caller = phonenumbers.format_number(world.mobile_number(region), phonenumbers.PhoneNumberFormat.E164)
    ended = at - sim.between(0, 3_000)
    if answered:
        ring = 5_000 + min(int(rng.expovariate(1 / 45_000)), 900_000)
        talk = 20_000 + min(int(rng.expovariate(1 / 200_000)), 3_000_000)
    else:
        ring, talk = 5_000 + min(int(rng.expovariate(1 / 40_000)), 600_000), 0
    started = ended - talk - ring
    answered_at = started + ring if answered else None
    agent_user, agent_number = rng.choice(world.agents) if answered else (None, None)
    call_id = sim.uuid()
    cdr = sim.envelope(ended, "pbx")
    cdr.update(
        call_id=call_id,
        direction="INBOUND" if inbound else "OUTBOUND",
        caller_number=caller,
        service_number=rng.choice(SERVICE_NUMBERS) if inbound else OUTBOUND_NUMBER,
        started_at=from_millis(started),
        answered_at=from_millis(answered_at) if answered_at is not None else None,
        ended_at=from_millis(ended),
        answered_by_number=agent_number,
        answered_by_user=agent_user,
    )
    events = [SimulatedEvent(CALL_KIND, CALL.name, CALL_DETAIL_RECORD, cdr, tags=tuple(tags))]
    if answered_at is not None and inbound and rng.random() < sim.recorded:
        events.append(_recording(sim, call_id, caller, started, answered_at, ended))
    return events


def _recording(
    sim: SimulationContext, call_id: str, caller: str, started: int, answered_at: int, ended: int
) -> SimulatedEvent:
    rng, mix = sim.rng, sim.mix
    tags: tuple[str, ...] = ()
    roll = rng.random()
    notice: int | None
    if roll < mix.recording_notice_missing:
        notice, tags = None, (RECORDING_WITHOUT_NOTICE,)
    elif roll < mix.recording_notice_missing + mix.recording_notice_late:
        notice, tags = answered_at + sim.between(1_000, min(15_000, ended - answered_at)), (NOTICE_AFTER_START,)
    elif roll < mix.recording_notice_missing + mix.recording_notice_late + mix.recording_outside_call:
        # announced, but recorded outside the call: from before the answer or past the hang-up
        shift, tags = sim.between(1_000, 8_000), (RECORDING_OUTSIDE_CALL,)
        if roll < mix.recording_notice_missing + mix.recording_notice_late + mix.recording_outside_call / 2:
            answered_at -= shift  # the recording starts `shift` ms before the answer
        else:
            ended += shift  # and ends `shift` ms after the hang-up
        notice = answered_at - 500
    else:  # the announcement plays in the queue, before the call is answered
        notice = started + sim.between(500, max(600, min(8_000, answered_at - started - 500)))
    recording_id = sim.uuid()
    day = from_millis(ended)
    record = sim.envelope(ended, "call-recorder", lag_ms=(2_000, 30_000))
    record.update(
        recording_id=recording_id,
        call_id=call_id,
        caller_number=caller,
        recording_uri=f"s3://cs-call-recordings/{day:%Y/%m/%d}/{recording_id}.opus",
        notice_played_at=from_millis(notice) if notice is not None else None,
        recording_started_at=from_millis(answered_at),
        recording_ended_at=day,
    )
    return SimulatedEvent(RECORDING, CALL.name, CALL_RECORDING, record, tags=tags)
