"""trustport switch enforcement drivers: one protocol, eight drivers (SSH CLI, SNMP, RADIUS CoA).

Standalone library: imports nothing from the rest of trustport.
"""

from .base import Capability, SwitchDriver, Target, VlanChange, check_vlan
from .errors import (
    AuthenticationError,
    CoANak,
    CommandFailed,
    ConnectError,
    DriverError,
    DriverTimeout,
    HostKeyError,
    InvalidArgument,
    Unsupported,
    VerificationFailed,
)
from .registry import DriverEntry, DriverRegistry, SwitchResult, default_registry, run_each

__all__ = [
    "AuthenticationError",
    "Capability",
    "CoANak",
    "CommandFailed",
    "ConnectError",
    "DriverEntry",
    "DriverError",
    "DriverRegistry",
    "DriverTimeout",
    "HostKeyError",
    "InvalidArgument",
    "SwitchDriver",
    "SwitchResult",
    "Target",
    "Unsupported",
    "VerificationFailed",
    "VlanChange",
    "check_vlan",
    "default_registry",
    "run_each",
]
