"""One settings model: the YAML configuration (``config``, loaded by ``safe_yaml``) and what the RADIUS hook loads
from hook.json (``hook``), which the configuration produces."""
