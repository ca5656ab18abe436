"""ServerApp: the Flower-facing entry point; the work is in :mod:`fedpriv.apps.server`."""

from __future__ import annotations

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedpriv.apps.server import serve
from fedpriv.flower_internals import quicken_object_pulls

# In a deployment this process pulls each reply's content from the SuperLink as soon as the
# reply is announced; Flower's 1 s first retry would cost a second an exchange.
quicken_object_pulls()
app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Run the federation described by the run config and write its run directory."""
    serve(grid, context)
