"""Threshold CKKS in a stock Flower app: ``threshold_mod`` and ``ThresholdEncryptedFedAvg``.

The example app's own handlers (``examples/pytorch-plain``) run behind the mod on a grid
whose nodes keep their state between messages (as SuperNodes do), under Flower's own
``Strategy.start()``; the same federation under Flower's ``FedAvg`` is the plaintext twin.
"""

import numpy as np
import pytest
import torch
from flwr.app import ArrayRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.serverapp.strategy import FedAvg
from support import FakeGrid

from fedpriv.attacks.results import Status, Threat
from fedpriv.attacks.runner import read_results
from fedpriv.cli import main
from fedpriv.errors import ConfigError, KeyMaterialError, ReplyCode
from fedpriv.federation.app_recording import RECORD_DIR_KEY
from fedpriv.flower import (
    PROTOCOL_ACTION,
    ThresholdEncryptedFedAvg,
    ThresholdSettings,
    is_encrypted,
    make_threshold_mod,
    record_run,
    threshold_query,
)
from fedpriv.rundir import RunDirectory
from fedpriv.schemes.base import load_scheme
from fedpriv.schemes.threshold import messages as protocol
from fedpriv.schemes.threshold.messages import DecryptRequest
from fedpriv.schemes.threshold.scheme import APP_COALITION

NODES = [101, 102, 103]
ROUNDS = 2
MODEL, DATA = "pytorch_app.task:Net", "pytorch_app.task:load_data"
RUN_CONFIG = {"local-epochs": 1, "learning-rate": 0.1, "train-examples": 0}

pytestmark = pytest.mark.slow


class Federation:
    """The app's ClientApp (behind ``mod`` with ``threshold_query`` registered, as the how-to
    says; none: the plain app), each node keeping its state between messages."""

    def __init__(self, client_app, mod=None) -> None:
        self.app = client_app.app
        if mod is not None:
            self.app = ClientApp(mods=[mod])
            self.app.train()(client_app.train_handler)
            self.app.evaluate()(client_app.evaluate_handler)
            self.app.query(PROTOCOL_ACTION)(threshold_query)
        self.states = {node: RecordDict() for node in NODES}
        self.replies: list[Message] = []
        self.grid = FakeGrid(NODES, self.answer)

    def answer(self, message: Message) -> Message:
        node = message.metadata.dst_node_id
        context = Context(
            run_id=1,
            node_id=node,
            node_config={"partition-id": NODES.index(node), "num-partitions": len(NODES)},
            state=self.states[node],
            run_config=RUN_CONFIG,
        )
        reply = self.app(message, context)
        self.replies.append(reply)
        return reply

    def run(self, task, strategy, grid=None) -> dict[int, ArrayRecord]:
        """Every round's global model (round 0: the initial one)."""
        models: dict[int, ArrayRecord] = {}

        def keep(server_round: int, arrays: ArrayRecord) -> None:
            models[server_round] = arrays

        torch.manual_seed(0)
        strategy.start(
            grid=grid or self.grid,
            initial_arrays=ArrayRecord(task.Net().state_dict()),
            num_rounds=ROUNDS,
            evaluate_fn=keep,
        )
        return models


@pytest.fixture(scope="module")
def runs(app, tmp_path_factory):
    from flwr.supercore.task_identity import TaskIdentity

    TaskIdentity.run_id, TaskIdentity.task_id, TaskIdentity.node_id = 1, 1, 0
    client_app, task = app
    keys = tmp_path_factory.mktemp("threshold-keys")
    plain = Federation(client_app).run(task, FedAvg(fraction_train=1.0))
    settings = ThresholdSettings(threshold=2, max_round_examples=2000, max_round_clients=3)
    strategy = ThresholdEncryptedFedAvg(
        keys, settings, provision=True, fraction_train=1.0, min_available_nodes=len(NODES)
    )
    federation = Federation(client_app, make_threshold_mod(settings, keys))
    run_dir = keys.parent / "threshold-run"
    recorded = record_run(
        federation.grid,
        {**RUN_CONFIG, RECORD_DIR_KEY: str(run_dir)},
        model=task.Net,
        data=task.load_data,
    )
    encrypted = federation.run(task, strategy, recorded)
    return plain, encrypted, federation, strategy, run_dir


def test_the_threshold_app_trains_the_plaintext_twins_models(runs):
    plain, encrypted, *_ = runs
    assert sorted(plain) == sorted(encrypted) == list(range(ROUNDS + 1))
    for server_round in range(ROUNDS + 1):
        for key in plain[server_round].keys():
            expected = plain[server_round][key].numpy()
            gap = np.abs(encrypted[server_round][key].numpy() - expected).max()
            assert gap < 1e-6, (server_round, key, gap)


def test_the_server_holds_ciphertexts_and_signed_uploads_only(runs):
    _, _, federation, strategy, _ = runs
    uploads = [r for r in federation.replies if r.metadata.message_type.startswith("train")]
    assert len(uploads) == ROUNDS * len(NODES)
    for reply in uploads:
        assert is_encrypted(reply.content.array_records["arrays"])
        assert "num-examples" not in reply.content.metric_records["metrics"]  # no n_k either
        assert protocol.UPLOAD in reply.content.config_records
    assert strategy.session is not None and len(strategy.session.setup_state.parties) == 3
    # The server's side holds no secret: only the roster of public keys and the parties'
    # own files are in the key directory, and nothing secret is on the strategy.
    assert not any("secret" in name for name in vars(strategy))


def test_a_decryption_of_one_upload_is_refused_by_every_party(runs):
    """The keyless server asks each party for a share of a 'sum' of one signed upload."""
    _, _, federation, strategy, _ = runs
    last = [r for r in federation.replies if r.metadata.message_type.startswith("train")][-1]
    signed = protocol.UploadSignature.from_record(last.content)
    upload = protocol.SignedUpload(
        signed.partition,
        signed.signature,
        protocol.upload_digest(last.content.array_records["arrays"]),
    )
    parties = strategy.session.setup_state.parties
    request = DecryptRequest(ROUNDS + 1, sorted(parties.values()), [], [upload])
    content = request.to_record(strategy.wire)
    for node in NODES:
        message = Message(
            content=content,
            dst_node_id=node,
            message_type=protocol.MESSAGE_TYPE,
            group_id=str(ROUNDS + 1),
        )
        reply = federation.answer(message)
        assert reply.has_error() and reply.error.code == ReplyCode.PROTOCOL_REFUSED
        assert "fewer than" in reply.error.reason or "signed" in reply.error.reason


def test_settings_refuse_what_cannot_work(tmp_path):
    with pytest.raises(ConfigError, match="threshold must be >= 2"):
        ThresholdSettings(threshold=1)
    with pytest.raises(ConfigError, match="no threshold preset"):
        ThresholdSettings(preset="n4096-packed")
    with pytest.raises(KeyMaterialError, match="key directory"):
        ThresholdEncryptedFedAvg(None)
    settings = ThresholdSettings.from_run_config({"fedpriv-threshold": 3, "fedpriv-min-uploads": 4})
    assert (settings.threshold, settings.uploads_needed) == (3, 4)


def test_the_recorded_run_is_attacked_as_threshold_ckks(runs, app, capsys):
    """The recording knows the protocol (its key setup named t); the curious server reads
    each round's aggregate and no update; a coalition's decryption of the app's encoding is
    not modelled (said so, not guessed)."""
    _, _, _, _, run_dir = runs
    rundir = RunDirectory(run_dir)
    config = rundir.read_config()
    assert (config.aggregation, config.decryption_threshold) == ("ckks-threshold", 2)
    assert config.num_server_rounds == ROUNDS and rundir.view_files(1, "train-recv-")
    assert len(rundir.view_files(1, "train-decrypt-recv-")) == len(NODES)
    history = rundir.read_history()
    assert history.aggregation == "ckks-threshold" and len(history) == ROUNDS
    # Round 1 also carries the key setup, as in the arm's history.
    assert history.rounds[0].bytes_up > history.rounds[1].bytes_up > 0
    scheme = load_scheme(config)
    assert "threshold CKKS" in scheme.server_sight(rundir).updates_hidden()
    coalition = scheme.coalition_sight(rundir, 1)
    assert coalition.updates_hidden() == APP_COALITION and coalition.models_hidden() is None
    argv = ["attack", str(run_dir), "--threat", "curious-server", "--attacks", "ig"]
    assert main([*argv, "--model", MODEL, "--data", DATA]) == 0
    result = read_results(run_dir, Threat.CURIOUS_SERVER)["ig"]
    assert result.status == Status.SCORED and result.settings["target"] == "round aggregates"
