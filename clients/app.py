"""ClientApp: receive the global model (plaintext or encrypted), train or evaluate, reply."""

from __future__ import annotations

import numpy as np
import torch
from flwr.app import ArrayRecord, Context, Error, Message, MetricRecord, RecordDict
from flwr.client.mod import secaggplus_mod
from flwr.clientapp import ClientApp
from flwr.clientapp.typing import ClientAppCallable
from flwr.common import (
    Code,
    EvaluateRes,
    FitRes,
    Status,
    ndarrays_to_parameters,
    parameters_to_ndarrays,
)
from flwr.compat.common import recorddict_compat as legacy

from fedpriv.config import RunConfig
from fedpriv.crypto.keys import check_preset, load_client_context
from fedpriv.crypto.packing import decrypt_weighted_mean, encrypt_values, encrypt_weighted
from fedpriv.crypto.presets import get_preset
from fedpriv.data import ClientData, load_dataset
from fedpriv.defenses.dp import clip_update, train_dp_sgd
from fedpriv.errors import (
    AGGREGATE_REJECTED,
    NO_TRAINING_DATA,
    AggregateRejectedError,
    CiphertextFormatError,
    ConfigError,
)
from fedpriv.models import load_state, model_state, state_to_vector, vector_to_state
from fedpriv.task import client_data, initial_state, local_seed, new_model, num_parameters
from fedpriv.training import evaluate, train
from fedpriv.wire import record_to_state, state_to_record

app = ClientApp()
# What a broadcast from the server can be found to be: corrupt, or summed under another key.
UNTRUSTED_AGGREGATE = (AggregateRejectedError, CiphertextFormatError)
# Virtual clients share the machine's cores; one torch thread each avoids oversubscription.
torch.set_num_threads(1)


def _setup(context: Context) -> tuple[RunConfig, int, int, ClientData]:
    if not context.run_config:
        raise ConfigError("the ClientApp received an empty run config")
    config = RunConfig.from_flower(dict(context.run_config))
    if "key-dir" in context.node_config:
        # In a deployment the secret key lives on the node: its own key-dir wins over the run's,
        # which names where the server finds its parameters-only context.
        config = config.replace(key_dir=str(context.node_config["key-dir"]))
    if config.aggregation == "ckks":
        check_preset(config.key_dir, config.ckks_preset)
    partition_id = int(context.node_config["partition-id"])
    num_partitions = int(context.node_config["num-partitions"])
    return config, partition_id, num_partitions, client_data(config, partition_id, num_partitions)


def _global_state(config: RunConfig, record: ArrayRecord) -> dict[str, np.ndarray]:
    """The global model the server broadcast: plaintext arrays, or the decrypted mean."""
    if config.aggregation == "plaintext":
        return record_to_state(record)
    if len(record) == 0:  # round 1: the server holds no model; start from the seed
        return initial_state(config)
    mean, _ = decrypt_weighted_mean(
        record,
        load_client_context(config.key_dir),
        get_preset(config.ckks_preset),
        max_total_weight=len(load_dataset(config.dataset)),
        num_values=num_parameters(config) + 1,
    )
    return vector_to_state(mean, initial_state(config))


def _sum_size(config: RunConfig, num_partitions: int) -> int:
    """How many clients' values can end up in one sum (for the bound check)."""
    return max(config.num_clients, num_partitions)


def _local_training(
    model: torch.nn.Module, config: RunConfig, data: ClientData, seed: int
) -> float:
    """Local SGD on the client's training split: plain, or DP-SGD (Opacus) under dp-sgd."""
    recipe = (config.local_epochs, config.batch_size, config.learning_rate, config.momentum)
    if config.defense == "dp-sgd":
        return train_dp_sgd(model, data.x_train, data.y_train, *recipe, config.dp_settings(), seed)
    return train(model, data.x_train, data.y_train, *recipe, seed=seed)


def secagg_when_configured(msg: Message, context: Context, call_next: ClientAppCallable) -> Message:
    """Apply Flower's ``secaggplus_mod`` in the secagg arm only (it claims every TRAIN message)."""
    if context.run_config.get("aggregation") == "secagg":
        return secaggplus_mod(msg, context, call_next)
    return call_next(msg, context)


def _legacy_state(config: RunConfig, parameters: object) -> dict[str, np.ndarray]:
    """Name the arrays of a legacy ``Parameters`` message in the model's state-dict order."""
    arrays = parameters_to_ndarrays(parameters)  # type: ignore[arg-type]
    return dict(zip(initial_state(config), arrays, strict=True))


def _refusal(msg: Message, code: int, reason: str) -> Message:
    """An error reply the server understands (``code``) and logs (``reason``)."""
    return Message(Error(code=code, reason=reason), reply_to=msg)


@app.train(mods=[secagg_when_configured])
def train_handler(msg: Message, context: Context) -> Message:
    """Train on local data from the global model and reply with the (encrypted) update.

    A client with no training record, or one that finds the broadcast aggregate corrupt,
    replies with an error code instead of an update (and trains on nothing it cannot trust).
    """
    config, partition_id, num_partitions, data = _setup(context)
    if len(data.y_train) == 0:
        return _refusal(msg, NO_TRAINING_DATA, f"partition {partition_id} has no training record")
    if config.aggregation == "secagg":
        return _train_legacy(msg, config, partition_id, data)
    server_round = int(msg.content["config"]["server-round"])
    model = new_model(config)
    try:
        global_state = _global_state(config, msg.content["arrays"])
    except UNTRUSTED_AGGREGATE as err:
        return _refusal(msg, AGGREGATE_REJECTED, f"aggregate rejected: {err}")
    load_state(model, global_state)
    train_loss = _local_training(
        model, config, data, local_seed(config, server_round, partition_id)
    )
    num_examples = len(data.y_train)
    if config.aggregation == "plaintext":
        content = RecordDict(
            {
                "arrays": state_to_record(model_state(model)),
                "metrics": MetricRecord(
                    {
                        "train-loss": train_loss,
                        "num-examples": num_examples,
                        "partition-id": partition_id,
                    }
                ),
            }
        )
    else:
        vector, weight = state_to_vector(model_state(model)), float(num_examples)
        if config.defense == "dp":
            # DP-FedAvg: bounded contribution (global + clipped update), uniform weight.
            start = state_to_vector(global_state)
            vector = start + clip_update(vector - start, config.dp_clipping_norm)
            weight = 1.0
        # The server must learn neither parameters nor n_k: both travel encrypted only.
        encrypted = encrypt_weighted(
            load_client_context(config.key_dir),
            get_preset(config.ckks_preset),
            vector,
            weight,
            _sum_size(config, num_partitions),
        )
        content = RecordDict({"arrays": encrypted})
    return Message(content=content, reply_to=msg)


def _train_legacy(msg: Message, config: RunConfig, partition_id: int, data: ClientData) -> Message:
    """SecAgg+ arm: Flower's secaggplus_mod reads the reply in the legacy FitRes layout."""
    fit_ins = legacy.recorddict_to_fitins(msg.content, keep_input=True)
    server_round = int(fit_ins.config.get("server_round", msg.metadata.group_id or 0))
    model = new_model(config)
    load_state(model, _legacy_state(config, fit_ins.parameters))
    train_loss = _local_training(
        model, config, data, local_seed(config, server_round, partition_id)
    )
    fit_res = FitRes(
        status=Status(Code.OK, ""),
        parameters=ndarrays_to_parameters(list(model_state(model).values())),
        num_examples=len(data.y_train),
        metrics={"train-loss": train_loss},
    )
    return Message(legacy.fitres_to_recorddict(fit_res, keep_input=False), reply_to=msg)


def _evaluate_legacy(msg: Message, config: RunConfig, data: ClientData) -> Message:
    """SecAgg+ arm: the legacy evaluate round (EvaluateIns in, EvaluateRes out)."""
    evaluate_ins = legacy.recorddict_to_evaluateins(msg.content, keep_input=True)
    model = new_model(config)
    load_state(model, _legacy_state(config, evaluate_ins.parameters))
    loss, accuracy = evaluate(model, data.x_test, data.y_test)
    res = EvaluateRes(Status(Code.OK, ""), loss, len(data.y_test), {"accuracy": accuracy})
    return Message(legacy.evaluateres_to_recorddict(res), reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the global model on the local test split and reply with (encrypted) metrics."""
    config, partition_id, num_partitions, data = _setup(context)
    if config.aggregation == "secagg":
        return _evaluate_legacy(msg, config, data)
    model = new_model(config)
    try:
        load_state(model, _global_state(config, msg.content["arrays"]))
    except UNTRUSTED_AGGREGATE as err:
        return _refusal(msg, AGGREGATE_REJECTED, f"aggregate rejected: {err}")
    loss, accuracy = evaluate(model, data.x_test, data.y_test)
    num_examples = len(data.y_test)
    if config.aggregation == "plaintext":
        metrics = MetricRecord(
            {
                "loss": loss,
                "accuracy": accuracy,
                "num-examples": num_examples,
                "partition-id": partition_id,
            }
        )
        return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
    sums = np.array([loss * num_examples, round(accuracy * num_examples), num_examples])
    encrypted = encrypt_values(
        load_client_context(config.key_dir),
        get_preset(config.ckks_preset),
        sums,
        _sum_size(config, num_partitions),
    )
    return Message(content=RecordDict({"metrics": encrypted}), reply_to=msg)
