"""What a refusal looks like to a user: one line on the output, exit 2, no traceback."""


def one_line(result, *needles: str) -> str:
    """The refusal's one line (a click ``CliRunner`` result), checked: exit 2, no traceback,
    starting ``cowsim: error:``, saying each of ``needles``."""
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code == 2, result.output
    lines = result.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cowsim: error: "), result.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
