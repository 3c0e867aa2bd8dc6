"""cowsim: a discrete-event performance simulator of container storage drivers."""
__version__ = "0.1.0"

from .api import (RunResult, image_history, inspect_image, inspect_trace, load_run, load_scenario,  # noqa: E402
                  probe, resume_run, run_scenario, validate)

__all__ = ["RunResult", "image_history", "inspect_image", "inspect_trace", "load_run", "load_scenario", "probe",
           "resume_run", "run_scenario", "validate", "__version__"]
