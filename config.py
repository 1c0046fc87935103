"""pyinfra CLI configuration for this repository (pyinfra loads ./config.py before the inventory).

Its one job: validate every setting before pyinfra connects to any host, so a bad value stops the run
with one line naming the key and the fix, and no host is touched.
"""

from pyinfra.context import ctx_state
from pyinfra_cli.exceptions import CliError

from tasks.settings import validate_before_connect

validate_before_connect(ctx_state.get(), on_error=CliError)
