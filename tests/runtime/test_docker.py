"""docker/: no Docker engine here, so the compose file is checked by reading it against the code it runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from streamsent.cli import build_parser
from streamsent.runtime.config import load_config
from streamsent.runtime.run import sample_file

yaml = pytest.importorskip("yaml", reason="PyYAML reads the compose file (pip install -e '.[test]')")

DOCKER = Path(__file__).resolve().parents[2] / "docker"
ROOT = DOCKER.parent


def _compose() -> dict:
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


def _image_path(path: str) -> Path:
    """A path inside the image -> the repository file the Dockerfile copies there."""
    copies = re.findall(r"^COPY (\S+) (\S+)$", (DOCKER / "Dockerfile").read_text(), re.M)
    for src, dest in copies:
        if path.startswith(dest.rstrip("/") + "/"):
            return ROOT / src / path[len(dest.rstrip("/")) + 1:]
    raise AssertionError(f"{path} is not copied into the image (COPY lines: {copies})")


def test_images_are_pinned_and_the_dockerfile_is_slim_non_root_and_warm():
    services = _compose()["services"]
    for name, svc in services.items():
        image = svc.get("image", "")
        assert re.fullmatch(r"[\w./-]+:[\w.-]+", image) and not image.endswith(":latest"), (name, image)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft, one node
    dockerfile = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11[\d.]*-slim", dockerfile, re.M)
    assert re.search(r"^USER streamsent$", dockerfile, re.M) and "streamsent warmup" in dockerfile


def test_workers_share_a_group_and_run_a_real_config_with_real_flags(monkeypatch):
    services = _compose()["services"]
    workers = [svc for name, svc in services.items() if name.startswith("worker")]
    assert len(workers) == 2
    groups = set()
    for svc in workers:
        args = build_parser().parse_args(svc["command"])  # flags the CLI really has
        assert args.command == "run" and args.no_dashboard
        for key, value in svc["environment"].items():
            monkeypatch.setenv(key, str(value))
        cfg = load_config(_image_path(args.config))  # the config in the image, with the service's overrides
        assert cfg.source.bootstrap == ("kafka:9092",) and cfg.metrics.port and cfg.metrics.host == "0.0.0.0"
        groups.add(cfg.source.group_id)
        assert f"{cfg.metrics.port}" in svc["ports"][0].split(":")[-1]
        for key in svc["environment"]:
            monkeypatch.delenv(key)
    assert len(groups) == 1, "two workers, one consumer group"
    topics = " ".join(services["topics"]["command"])
    for topic in (*cfg.source.topics, cfg.sinks[0].topic, cfg.dead_letter.topic):
        assert f"{topic}:" in topics, f"the topic init does not create {topic}"


def test_the_producer_sends_a_bundled_sample_to_the_workers_topic():
    services = _compose()["services"]
    args = build_parser().parse_args(services["producer"]["command"])
    assert args.command == "produce" and sample_file(args.file).is_file()
    assert args.bootstrap == "kafka:9092" and args.topic == "reviews"
