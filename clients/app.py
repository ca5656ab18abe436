"""ClientApp: the Flower-facing entry point; the work is in :mod:`fedpriv.apps.client`."""

from __future__ import annotations

import gc

# The Deployment Engine starts this module in a fresh process for every message. torch's
# import allocates objects that live as long as the process: collecting during it is wasted
# work (about 8% of the import, measured), so the collector waits until torch is in.
gc.disable()
import torch  # noqa: E402

gc.enable()
from flwr.app import Context, Message  # noqa: E402
from flwr.clientapp import ClientApp  # noqa: E402
from flwr.clientapp.typing import ClientAppCallable  # noqa: E402

from fedpriv.apps.client import ClientRun, refusal, roster_reply, run_config  # noqa: E402
from fedpriv.errors import ReplyCode  # noqa: E402
from fedpriv.schemes.base import Mod, load_scheme  # noqa: E402

app = ClientApp()
# Virtual clients share the machine's cores; one torch thread each avoids oversubscription.
torch.set_num_threads(1)


def scheme_mods(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Apply the mods of the run's scheme (SecAgg+'s claims every TRAIN message)."""
    handler = call_next
    for mod in reversed(load_scheme(run_config(context)).client_mods()):
        handler = _chain(mod, handler)
    return handler(msg, context)


def _chain(mod: Mod, call_next: ClientAppCallable) -> ClientAppCallable:
    def handler(msg: Message, context: Context) -> Message:
        return mod(msg, context, call_next)

    return handler


@app.train(mods=[scheme_mods])
def train_handler(msg: Message, context: Context) -> Message:
    """Train on local data from the global model and reply with the (encoded) update."""
    return ClientRun(context).train(msg)


@app.query("protocol")
def protocol_handler(msg: Message, context: Context) -> Message:
    """A step of the run's scheme's own protocol (threshold CKKS: key setup, decryption)."""
    return ClientRun(context).query(msg)


@app.query("consistency", mods=[scheme_mods])
def consistency_handler(msg: Message, context: Context) -> Message:
    """Reached only where the scheme has no consistency mod (which answers these itself)."""
    return refusal(msg, ReplyCode.PROTOCOL_REFUSED, "this run does not check model consistency")


@app.query("roster")
def roster_handler(msg: Message, context: Context) -> Message:
    """Name the partition this node holds (the server orders its sampling by it)."""
    return roster_reply(msg, context)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the local test split and reply with its metrics."""
    return ClientRun(context).evaluate(msg)
