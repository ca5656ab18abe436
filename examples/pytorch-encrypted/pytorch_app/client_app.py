"""pytorch-app: the ClientApp."""

import torch
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from fedpriv.flower import ckks_mod
from pytorch_app.task import Net, load_data, test, train

app = ClientApp(mods=[ckks_mod])


@app.train()
def train_handler(msg: Message, context: Context) -> Message:
    """Train the received model on local data."""
    partition_id = int(context.node_config["partition-id"])
    x, y = load_data(partition_id, int(context.node_config["num-partitions"]))
    limit = int(context.run_config["train-examples"])  # 0: all of them
    x, y = (x[:limit], y[:limit]) if limit else (x, y)
    torch.manual_seed(partition_id)
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss = train(
        model,
        x,
        y,
        int(context.run_config["local-epochs"]),
        float(context.run_config["learning-rate"]),
    )
    metrics = MetricRecord({"train_loss": loss, "num-examples": len(y)})
    content = RecordDict({"arrays": ArrayRecord(model.state_dict()), "metrics": metrics})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate_handler(msg: Message, context: Context) -> Message:
    """Evaluate the received model on local data."""
    partition_id = int(context.node_config["partition-id"])
    x, y = load_data(partition_id, int(context.node_config["num-partitions"]))
    model = Net()
    model.load_state_dict(msg.content["arrays"].to_torch_state_dict())
    loss, accuracy = test(model, x, y)
    metrics = MetricRecord({"eval_loss": loss, "eval_acc": accuracy, "num-examples": len(y)})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
