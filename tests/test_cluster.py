"""The cluster configs: the Ray autoscaler YAML against Ray's own schema, the KubeRay
manifests' structure, and that every entrypoint is the flow's CLI with a config that loads."""

from __future__ import annotations

import copy
import shlex
from pathlib import Path

import pytest
import yaml

from flows.arctic import parse_args
from flows.settings import load_settings

ROOT = Path(__file__).resolve().parents[1]
GROUPS = {"cpu_worker": "cpu-worker", "gpu_annotator": "gpu-annotator",
          "gpu_rewriter": "gpu-rewriter"}


def _load(rel: str) -> dict:
    return yaml.safe_load((ROOT / rel).read_text())


def test_autoscaler_yaml_passes_rays_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = _load("cluster/aws.yaml")
    validate_config(prepare_config(copy.deepcopy(cfg)))
    types = cfg["available_node_types"]
    assert set(types) == {"head", *GROUPS}
    assert types["head"]["resources"] == {"CPU": 0}  # drivers only
    assert all(types[g]["min_workers"] == 0 for g in GROUPS)  # scale from zero
    assert types["gpu_rewriter"]["node_config"]["InstanceType"] == "p5.48xlarge"  # 8xH100
    # S3 through an instance profile on every node, no keys anywhere
    assert all("IamInstanceProfile" in t["node_config"] for t in types.values())
    text = (ROOT / "cluster/aws.yaml").read_text().lower()
    assert "aws_secret_access_key" not in text and "aws_access_key_id" not in text
    broken = copy.deepcopy(cfg)
    broken["available_node_types"]["cpu_worker"]["max_workers"] = "many"
    with pytest.raises(Exception, match="integer"):
        validate_config(prepare_config(broken))


def _entry_settings(entrypoint: str):
    args = parse_args(shlex.split(entrypoint)[2:])
    assert shlex.split(entrypoint)[:2] == ["python", "flows/arctic.py"]
    return args, load_settings(ROOT / args.config)


def test_kuberay_manifests_match_the_flow_and_the_autoscaler_groups():
    rc, job = _load("cluster/kuberay/raycluster.yaml"), _load("cluster/kuberay/rayjob.yaml")
    assert (rc["apiVersion"], rc["kind"]) == ("ray.io/v1", "RayCluster")
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    assert job["spec"]["rayClusterSpec"] == rc["spec"]
    spec = rc["spec"]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"
    workers = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
    assert set(workers) == set(GROUPS.values())
    args, settings = _entry_settings(job["spec"]["entrypoint"])
    assert args.phases == "1,2,3,mix"

    def gpus(group):
        c = workers[group]["template"]["spec"]["containers"][0]
        return int(c["resources"]["limits"].get("nvidia.com/gpu", 0))

    # whole tensor-parallel replicas per rewriter node (four of TP 2 on 8 GPUs)
    per_node = gpus("gpu-rewriter") // settings.phase3.gpus_per_actor
    assert per_node * settings.phase3.gpus_per_actor == gpus("gpu-rewriter")
    assert settings.phase3.gpus_per_actor == settings.phase3.engine.tensor_parallel_size
    assert gpus("gpu-annotator") == settings.phase2.gpus_per_actor and gpus("cpu-worker") == 0
    autoscaler = _load("cluster/aws.yaml")["available_node_types"]
    for ours, theirs in GROUPS.items():
        assert workers[theirs]["minReplicas"] == 0
        assert workers[theirs]["maxReplicas"] == autoscaler[ours]["max_workers"]
    assert workers["gpu-rewriter"]["maxReplicas"] * per_node >= (
        settings.phase3.max_actors or 1)


def test_gpu_groups_take_only_their_stage():
    """The GPU groups offer no CPU and a resource only their stage's pool asks for, in the
    autoscaler YAML and the KubeRay groups alike; the flow's cluster config asks for it."""
    import json

    settings = load_settings(ROOT / "flows/configs/cluster.yaml")
    types = _load("cluster/aws.yaml")["available_node_types"]
    workers = {g["groupName"]: g for g in
               _load("cluster/kuberay/raycluster.yaml")["spec"]["workerGroupSpecs"]}
    for group, phase in (("gpu_annotator", settings.phase2), ("gpu_rewriter", settings.phase3)):
        res = types[group]["resources"]
        assert res["CPU"] == 0 and phase.cpus_per_actor == 0
        assert res["GPU"] >= phase.gpus_per_actor > 0
        custom = {k: v for k, v in res.items() if k not in ("CPU", "GPU")}
        assert phase.resources and set(phase.resources) == set(custom)
        assert all(custom[k] >= v for k, v in phase.resources.items())
        params = workers[GROUPS[group]]["rayStartParams"]
        assert params["num-cpus"] == "0"
        assert json.loads(json.loads(params["resources"])) == custom
    # the two pools never share a resource, and no CPU group offers either
    assert not set(settings.phase2.resources) & set(settings.phase3.resources)
    assert set(types["cpu_worker"]["resources"]) == {"CPU"}
    assert "resources" not in workers["cpu-worker"]["rayStartParams"]


def test_runtime_env_and_readme_commands():
    env = _load("cluster/runtime_env.yaml")
    assert env["working_dir"] == "." and "out/" in env["excludes"]
    assert not any("KEY" in k or "SECRET" in k for k in env.get("env_vars", {}))
    readme = (ROOT / "README.md").read_text()
    for cmd in ("ray up cluster/aws.yaml", "kubectl apply -f cluster/kuberay/",
                "--runtime-env cluster/runtime_env.yaml"):
        assert cmd in readme
    line = next(x for x in readme.splitlines() if "--runtime-env cluster/runtime_env.yaml" in x)
    _entry_settings(line.split(" -- ", 1)[1].strip().rstrip("\\").strip())
