"""The cluster and deployment definitions in infra/ parse and name what the code expects."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import yaml

import flows.coregister
from pipeline.actors import RegistrarActor

INFRA = Path(__file__).resolve().parents[2] / "infra"
REPO = INFRA.parent
IMAGE = re.compile(r"^soma-coreg:\d+\.\d+\.\d+(-gpu)?$")
STORAGE_ENV = {"AWS_ENDPOINT_URL_S3", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"}


def load_all(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_kuberay_cluster_has_a_head_a_cpu_group_and_a_gpu_group_on_the_soma_image():
    cluster, secret = load_all(INFRA / "kuberay" / "raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    import ray

    assert cluster["spec"]["rayVersion"].split(".")[0] == ray.__version__.split(".")[0]
    head = cluster["spec"]["headGroupSpec"]
    assert head["rayStartParams"]["num-cpus"] == "0"  # the head schedules; model actors go to workers
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu-workers", "gpu-workers"}
    gpu = groups["gpu-workers"]["template"]["spec"]["containers"][0]
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1 and groups["gpu-workers"]["rayStartParams"]["num-gpus"] == "1"
    pods = [head["template"]] + [g["template"] for g in groups.values()]
    for pod in pods:
        container = pod["spec"]["containers"][0]
        assert IMAGE.match(container["image"]), container["image"]
        assert container["envFrom"][0]["secretRef"]["name"] == secret["metadata"]["name"]
    assert set(secret["stringData"]) == STORAGE_ENV


def test_ray_up_config_starts_a_head_and_workers_in_the_soma_image():
    config = yaml.safe_load((INFRA / "ray" / "cluster.yaml").read_text())
    assert IMAGE.match(config["docker"]["image"])
    assert config["provider"]["type"] == "local" and config["provider"]["worker_ips"]
    assert any("ray start --head" in c for c in config["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP:6379" in c for c in config["worker_start_ray_commands"])


def test_prefect_yaml_deploys_both_flows_on_the_work_pool_with_parameters_they_accept():
    config = yaml.safe_load((INFRA / "prefect" / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert set(deployments) == {"scheduled-archive", "backfill"}
    for d in deployments.values():
        path, name = d["entrypoint"].split(":")
        assert (REPO / path).is_file()
        flow = getattr(flows.coregister, name)
        accepted = set(inspect.signature(flow.fn).parameters)
        assert set(d["parameters"]) <= accepted, set(d["parameters"]) - accepted
        assert d["work_pool"]["name"] == "soma"
        assert "RAY_ADDRESS" in d["work_pool"]["job_variables"]["env"]
        assert IMAGE.match(d["work_pool"]["job_variables"]["image"])
    assert [s["cron"] for s in deployments["scheduled-archive"]["schedules"]] == ["0 3 * * *"]
    assert "schedules" not in deployments["backfill"]  # on demand
    assert deployments["scheduled-archive"]["entrypoint"].endswith(":coregister_archive")


def test_the_image_installs_the_package_with_its_checkpoint_and_the_pinned_torch():
    dockerfile = (INFRA / "docker" / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\S+) ", dockerfile, flags=re.M))
    for package in ("model", "pipeline", "flows", "cli"):
        assert package in copied
    assert (REPO / "model" / "weights" / "soma_lite.pt").is_file()
    assert (REPO / "model" / "weights" / "soma_lite.calibration.json").is_file()
    assert "ARG TORCH_VERSION=2.13.0" in dockerfile
    assert "Registrar.load" in dockerfile and "r.calibration is not None" in dockerfile  # the build fails without them
    assert RegistrarActor.__module__ == "pipeline.actors"  # actor code lives in the installed package
