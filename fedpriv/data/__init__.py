"""Datasets and partitioners: what each federated client trains and evaluates on."""

from fedpriv.data.datasets import Dataset, load_dataset
from fedpriv.data.partition import ClientData, Partitioning, partition_indices

__all__ = ["ClientData", "Dataset", "Partitioning", "load_dataset", "partition_indices"]
