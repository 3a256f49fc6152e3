"""Finding a device the way operators name it: a registry id, or a serial number when that is unique."""

from __future__ import annotations

from policy.errors import DeviceNotFound
from policy.model import DeviceRecord
from policy.store_sql import SqlDeviceStore


def resolve_device(store: SqlDeviceStore, ref: str) -> DeviceRecord:
    if ref.isdigit():
        found = store.get_device(int(ref))
        if found is not None:
            return found
    matches = [d for d in store.list_devices() if d.key.serial_number == ref]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise DeviceNotFound(f"serial {ref[:64]!r} is registered under {len(matches)} issuers; use the id "
                             f"({', '.join(str(m.id) for m in matches)})")
    raise DeviceNotFound(f"no device with id or serial {ref[:64]!r}; see 'trustport devices list'")
