"""`cowsim probe` with several drivers: one table, the container's creation cost beside the first write."""
import json

from click.testing import CliRunner

from sim.cli import main
from sim.drivers import REGISTRY


def probe(*args):
    return CliRunner().invoke(main, ["probe", *args])


def test_all_drivers_in_one_table_with_the_creation_cost():
    result = probe("--driver", "all", "--file-size", "64MiB")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "64 MiB file, 1 layer, dir depth 1, cold cache, ssd profile"
    assert lines[1].split()[:5] == ["driver", "create", "container", "1st", "write"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == set(REGISTRY)


def test_a_list_of_drivers_in_json_shows_vfs_paying_at_creation():
    result = probe("--driver", "overlay2,vfs", "--driver", "devicemapper", "--file-size", "64MiB", "--json")
    rows = {row["driver"]: row for row in json.loads(result.output)}
    assert list(rows) == ["overlay2", "vfs", "devicemapper"]
    # vfs copies the whole image when the container is made, and so has no copy-up later
    assert rows["vfs"]["create_container_s"] > rows["vfs"]["first_write_s"] and rows["vfs"]["copy_up_bytes"] == 0
    assert rows["overlay2"]["create_container_s"] < rows["overlay2"]["first_write_s"]
    assert rows["devicemapper"]["create_container_s"] > 1  # a thin device and its filesystem


def test_an_option_goes_to_the_drivers_that_have_it():
    assert probe("--driver", "overlay2,btrfs", "--option", "metacopy=true").exit_code == 0
    refused = probe("--driver", "overlay2,btrfs", "--option", "block_size=1")
    assert refused.exit_code == 2 and "none of overlay2, btrfs has it" in refused.output
