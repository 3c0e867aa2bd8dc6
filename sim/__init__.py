"""cowsim: a discrete-event performance simulator of container storage drivers."""
__version__ = "0.1.0"

from .api import RunResult, load_run, load_scenario, probe, run_scenario, validate  # noqa: E402

__all__ = ["RunResult", "load_run", "load_scenario", "probe", "run_scenario", "validate", "__version__"]
