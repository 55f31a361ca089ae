"""The command line: parse, validate, call the library, report. No math here.

base.py holds the group and what every command shares, options.py the shared options,
method_commands.py the method commands, tools.py compare, models, layers and eval, and
concepts_command.py `concepts` (Deep Feature Factorization), server.py `serve`, client.py the client of
`gradcam --server`.
TensorFlow/Keras are imported inside the commands that compute, so `gradcam --help` and
`gradcam models` start instantly.
"""

from gradcam_cli.cli.base import UsageProblem, main
from gradcam_cli.cli.concepts_command import concepts_command
from gradcam_cli.cli.method_commands import cam_command, dilated_command, gradcam_command, guided_command
from gradcam_cli.cli.options import COLORMAP_NAMES, MAX_INPUT_SIDE
from gradcam_cli.cli.report_command import report_command  # noqa: F401 (registers `gradcam report`)
from gradcam_cli.cli.server import serve_command  # noqa: F401 (registers `gradcam serve`)
from gradcam_cli.cli.tools import compare_command, eval_command, layers_command, models_command

__all__ = ["main", "UsageProblem", "COLORMAP_NAMES", "MAX_INPUT_SIDE", "gradcam_command", "cam_command",
           "guided_command", "dilated_command", "compare_command", "eval_command", "layers_command",
           "models_command", "concepts_command"]
