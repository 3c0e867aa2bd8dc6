import pytest


@pytest.fixture
def run_cli(tmp_path):
    """Run the CLI in-process; returns the click Result."""
    from click.testing import CliRunner

    from sim.cli import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    return invoke
