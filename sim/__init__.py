"""cowsim: a discrete-event performance simulator of container storage drivers."""
__version__ = "0.1.0"

from .api import (RunResult, inspect_image, inspect_trace, load_run, load_scenario, probe,  # noqa: E402
                  resume_run, run_scenario, validate)

__all__ = ["RunResult", "inspect_image", "inspect_trace", "load_run", "load_scenario", "probe", "resume_run",
           "run_scenario", "validate", "__version__"]
