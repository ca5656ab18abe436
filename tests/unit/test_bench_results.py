"""The benchmark's typed results: medians, ratios and what the CLI prints of them."""

from fedpriv.bench.deployment import DeployResult, EngineCost
from fedpriv.cli.bench import print_bench


def test_deploy_result_compares_median_later_rounds(capsys):
    result = DeployResult(
        {"aggregation": "ckks", "num_clients": 3, "num_server_rounds": 3},
        EngineCost([12.0, 9.0, 10.0], 0.95),
        EngineCost([1.0, 0.2, 0.4], 0.95),
    )
    data = result.to_json()
    assert data["deployment_round_seconds"] == 9.5
    assert abs(data["simulation_round_seconds"] - 0.3) < 1e-12
    assert abs(data["round_seconds_ratio"] - 9.5 / 0.3) < 1e-9
    print_bench({"sizes": [], "precision": [], "deploy": data})
    err = " ".join(capsys.readouterr().err.split())  # rich wraps at the console width
    assert "9.5s a round on the Deployment Engine, 0.30s in simulation, ratio 31.7" in err


def test_deploy_result_gives_the_forks_speedup_over_flowers_executor(capsys):
    result = DeployResult(
        {"aggregation": "ckks", "num_clients": 3, "num_server_rounds": 3},
        EngineCost([5.0, 3.0, 3.0], 0.95),
        EngineCost([1.0, 0.5, 0.5], 0.95),
        EngineCost([20.0, 12.0, 12.0], 0.95),
    )
    data = result.to_json()
    assert data["flower_executor_round_seconds"] == 12.0 and data["fork_speedup"] == 4.0
    print_bench({"sizes": [], "precision": [], "deploy": data})
    err = " ".join(capsys.readouterr().err.split())
    assert "Flower's executor: 12.0s a round, 4.0x the forked" in err
