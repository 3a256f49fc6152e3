"""trustport switch enforcement drivers: one protocol, eight drivers (SSH CLI, SNMP, RADIUS CoA).

Standalone library: imports nothing from the rest of trustport.
"""

from .base import (
    Capability,
    DriverBase,
    PortMove,
    PortOutcome,
    PortStatus,
    SwitchDriver,
    Target,
    VlanChange,
    check_vlan,
)
from .errors import (
    AuthenticationError,
    CoANak,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    HostKeyChanged,
    HostKeyError,
    HostKeyUnknown,
    InterfaceMissing,
    InvalidArgument,
    NoAnswer,
    Unsupported,
    VerificationFailed,
    VlanMissing,
)
from .registry import DriverEntry, DriverRegistry, SwitchResult, default_registry, run_each

__all__ = [
    "AuthenticationError",
    "Capability",
    "CoANak",
    "CommandFailed",
    "ConnectError",
    "DriverBase",
    "DriverEntry",
    "DriverError",
    "DriverRegistry",
    "DriverTimeout",
    "HostKeyChanged",
    "HostKeyError",
    "HostKeyUnknown",
    "InterfaceMissing",
    "InvalidArgument",
    "NoAnswer",
    "PortMove",
    "PortOutcome",
    "PortStatus",
    "SwitchDriver",
    "SwitchResult",
    "Target",
    "Unsupported",
    "VerificationFailed",
    "VlanChange",
    "VlanMissing",
    "check_vlan",
    "default_registry",
    "run_each",
]
