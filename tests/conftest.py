import pytest
from hypothesis import HealthCheck, settings

# Every machine runs the property tests alike, as in CI: the same examples every run (derandomize,
# so no example database either), no per-example deadline and no too_slow health check (both
# measure wall time, and the suite must pass on a busy machine too). Each test's max_examples
# keeps its cost. A test that sets its own suppress_health_check names too_slow again. To hunt for
# new failing examples: `pytest --hypothesis-profile=explore` (random; a failure prints its blob).
settings.register_profile("cowsim", derandomize=True, database=None, deadline=None, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("explore", settings.get_profile("cowsim"), derandomize=False)
settings.load_profile("cowsim")


@pytest.fixture
def run_cli(tmp_path):
    """Run the CLI in-process; returns the click Result."""
    from click.testing import CliRunner

    from sim.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke
