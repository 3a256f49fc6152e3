"""Finding a device the way operators name it: a registry id, or a serial number when that is unique."""

from __future__ import annotations

from policy.dn import DnError, canonical_serial
from policy.errors import DeviceNotFound
from policy.model import DeviceRecord
from trustport.store.sql import SqlDeviceStore

MAX_DEVICE_ID = 2**63 - 1


def resolve_device(store: SqlDeviceStore, ref: str) -> DeviceRecord:
    """``ref`` is an ASCII decimal id, or a serial number in any spelling the registry normalises (NFC)."""
    if ref.isascii() and ref.isdigit() and len(ref) <= 19 and 0 < int(ref) <= MAX_DEVICE_ID:
        found = store.get_device(int(ref))
        if found is not None:
            return found
    try:
        serial = canonical_serial(ref, "device")
    except DnError as exc:
        raise DeviceNotFound(f"no device with id or serial {ref[:64]!r}: {exc}") from exc
    matches = [d for d in store.list_devices() if d.key.serial_number == serial]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DeviceNotFound(f"serial {ref[:64]!r} is registered under {len(matches)} issuers; use the id "
                             f"({', '.join(str(m.id) for m in matches)})")
    raise DeviceNotFound(f"no device with id or serial {ref[:64]!r}; see 'trustport devices list'")
