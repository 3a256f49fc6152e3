"""The built-in CLI vendors, one module each: ``<vendor>.py`` holds that vendor's facts as data (a
:class:`~switch_drivers.cli.CliVendor`: interface grammar, commands, error strings), its read-back parsers, its
options class and its driver class. Drivers are found through the ``trustport.switch_drivers`` entry points
(pyproject.toml); this package only re-exports them.
"""

from ..cli import CliVendor, check_interface, parse_vlan, render
from .arista_eos import ARISTA_EOS, AristaEosDriver, AristaEosOptions
from .aruba_aoscx import ARUBA_AOSCX, ArubaAosCxDriver, ArubaAosCxOptions
from .cisco_ios import CISCO_IOS, CiscoIosDriver, CiscoIosOptions
from .hp_procurve import HP_PROCURVE, HpProcurveDriver, HpProcurveOptions
from .juniper_junos import JUNIPER_JUNOS, JuniperJunosDriver, JuniperJunosOptions

__all__ = [
    "ARISTA_EOS",
    "ARUBA_AOSCX",
    "CISCO_IOS",
    "DRIVERS",
    "HP_PROCURVE",
    "JUNIPER_JUNOS",
    "VENDORS",
    "AristaEosDriver",
    "AristaEosOptions",
    "ArubaAosCxDriver",
    "ArubaAosCxOptions",
    "CiscoIosDriver",
    "CiscoIosOptions",
    "CliVendor",
    "HpProcurveDriver",
    "HpProcurveOptions",
    "JuniperJunosDriver",
    "JuniperJunosOptions",
    "check_interface",
    "parse_vlan",
    "render",
]

DRIVERS = (CiscoIosDriver, AristaEosDriver, ArubaAosCxDriver, HpProcurveDriver, JuniperJunosDriver)
VENDORS: dict[str, CliVendor] = {d.vendor.name: d.vendor for d in DRIVERS}
