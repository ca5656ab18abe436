"""`fedpriv bench --quick`: the overhead benchmark's fields and the size targets it shows."""

import json

import pytest

from fedpriv.bench.federation import process_tree_rss
from fedpriv.bench.settings import BenchSettings
from fedpriv.cli import main
from fedpriv.errors import ConfigError

RATIOS = (
    "bytes_up_ratio",
    "bytes_down_ratio",
    "encrypt_seconds_per_1m",
    "decrypt_seconds_per_1m",
    "server_parse_add_seconds_per_1m",
    "server_add_ratio",
    "server_parse_add_ratio",
)


@pytest.mark.slow
def test_quick_bench_writes_every_field(tmp_path, capsys):
    assert main(["bench", "--quick", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert f"results: {tmp_path / 'bench.json'}" in out
    results = json.loads((tmp_path / "bench.json").read_text())
    rows = {(r["preset"], r["parameters"]): r for r in results["sizes"]}
    presets = {
        "n4096-packed",
        "n4096-threshold",
        "n4096-compact",
        "n4096-additive",
        "nvflare-default",
    }
    assert {p for p, _ in rows} == presets
    for row in rows.values():
        assert all(row[key] > 0 for key in RATIOS), row
        for side in ("plaintext", "ckks"):
            assert row[side]["bytes_up"] > 0 and row[side]["bytes_down"] > 0
        predicted = row["ckks"]["predicted_std"]
        assert row["ckks"]["max_abs_error"] < (
            1e-6 if predicted != predicted else max(1e-6, 6 * predicted)
        )
        assert set(row["bytes_down_ratio_by_clients"]) == {"10", "100", "1000"}
    # Sizes are deterministic: the packed format's upload is 4.5 bytes a value (1.125x
    # float32), its seed-list download adds a 32-byte seed per client and ciphertext, its
    # expanded one a second polynomial (2.25x, what the default link gets past 65 uploads);
    # the compact format stays under 2x, TenSEAL's vectors cost 8x, NVFlare's setting ~14.5x.
    packed = rows[("n4096-packed", 200_000)]
    assert packed["bytes_up_ratio"] < 1.2
    down = packed["bytes_down_ratio_by_clients"]
    assert down["10"] < 1.2 and down["100"] < 1.4 and down["1000"] < 2.3
    assert 2.2 < packed["bytes_down_expanded_ratio"] < 2.3
    assert packed["bytes_down_ratio"] < 1.2  # the bench's uploads are within the break-even
    # Expanded, a client's decryption no longer expands a seed per upload.
    decrypt = packed["decrypt_seconds_per_1m_by_clients"]
    assert packed["decrypt_seconds_expanded_per_1m"] < decrypt["100"]
    assert rows[("n4096-compact", 200_000)]["bytes_up_ratio"] < 2.0
    assert 7.5 < rows[("n4096-additive", 200_000)]["bytes_up_ratio"] < 8.5
    assert 14 < rows[("nvflare-default", 200_000)]["bytes_up_ratio"] < 15
    # ckks-threshold: an upload (c0 only) and a decryption share up, 36 bits a value each
    # (2.25x float32); the plaintext model and a request naming the uploaders down. Issue
    # 27's goals: up <= 3x, down <= 1.5x.
    threshold = rows[("n4096-threshold", 200_000)]
    assert 2.2 < threshold["bytes_up_ratio"] < 2.35 and 0.99 < threshold["bytes_down_ratio"] < 1.01
    assert threshold["server_finish_seconds_per_1m"] > 0
    for entry in results["precision"]:
        threshold_preset = entry["preset"] == "n4096-threshold"
        assert entry["clients"] == (20 if threshold_preset else 100) and entry["bound"] == 4.0
        predicted = entry["predicted_std"]
        limit = 1e-6 if predicted != predicted else max(1e-6, 6 * predicted)  # NaN: none
        assert entry["max_abs_error"] < limit
    e2e = results["end_to_end"]
    assert e2e["round_seconds_ratio"] > 0 and e2e["ckks"]["final_accuracy"] > 0.5
    assert e2e["plaintext"]["final_accuracy"] > 0.5
    # Authentication beside the unauthenticated arm: tags and verification measured side
    # by side; its bytes are a few dozen per upload and per summed upload.
    assert e2e["ckks_unauthenticated"]["final_accuracy"] > 0.5
    assert 1.0 < e2e["authenticated_bytes_ratio"] < 1.05
    (auth,) = [a for a in results["authentication"] if a["parameters"] == 200_000]
    assert auth["preset"] == "n4096-packed" and 1.0 < auth["bytes_ratio"] < 1.01
    assert auth["tag_seconds_per_1m"] > 0 and auth["verify_seconds_per_1m"] > 0
    # Authenticated threshold CKKS: a decrypting party receives every upload's signature and
    # digest (about 100 bytes each) instead of the uploaders' indices: a few kilobytes.
    (verification,) = [v for v in results["threshold_verification"] if v["parameters"] == 200_000]
    uploads = verification["clients"]
    assert verification["passive_request_bytes"] < 200
    assert 90 * uploads < verification["authenticated_request_bytes"] < 200 * uploads
    assert verification["sign_seconds_per_1m"] > 0 and verification["verify_seconds_per_1m"] > 0


def test_bench_settings_validate_themselves():
    with pytest.raises(ConfigError):
        BenchSettings(sizes=(0,))
    with pytest.raises(ConfigError):
        BenchSettings(presets=("nope",))


def test_process_tree_rss_counts_this_process():
    import os

    assert process_tree_rss(os.getpid()) > 10 * 1024**2
