"""The command group: every subcommand's help works without importing TensorFlow."""

import subprocess
import sys

from qsopipe.pipeline.cli import COMMANDS


def test_help_of_every_command_imports_no_tensorflow():
    names = sorted(COMMANDS) + ["train quasarnet", "train mgii"]
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from qsopipe.pipeline.cli import cli\n"
        "for args in [[]] + [name.split() for name in sys.argv[1:]]:\n"
        "    result = CliRunner().invoke(cli, args + ['--help'])\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code, *names], check=True)
