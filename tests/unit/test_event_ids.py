"""Event ids (minqing.ledger.new_event_id): the same random version-4 UUID text as str(uuid.uuid4())."""
import uuid

from minqing.ledger import NewEvent, new_event_id
from tests.conftest import META


def test_an_event_id_is_a_random_version_4_uuid_in_canonical_text():
    ids = {new_event_id() for _ in range(20000)}
    assert len(ids) == 20000
    for text in list(ids)[:2000]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text                    # lower-case hex, 8-4-4-4-12
        assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    # every one of the 122 random bits varies (the fixed version and variant bits do not)
    ored, anded = 0, (1 << 128) - 1
    for text in ids:
        value = uuid.UUID(text).int
        ored |= value
        anded &= value
    random_bits = ((1 << 128) - 1) ^ (0xF << 76) ^ (0x3 << 62)
    assert ored & random_bits == random_bits and anded & random_bits == 0


def test_new_events_get_their_own_ids():
    assert NewEvent("case.progress_noted", {}, META).event_id != NewEvent("case.progress_noted", {}, META).event_id
