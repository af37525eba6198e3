"""deploy/: the DaemonSet and the systemd unit grant exactly the capabilities
the agent itself reports (`pydi -j agent --list-caps`), mount only what they
declare, and the agent refuses to start without any one of them, naming it.

Why each capability and mount: deploy/README.md."""
import json
import os
import posixpath
import shutil
import subprocess

import jsonschema
import pytest
import yaml

from conftest import PYDI, SOURCE, pydi_json

DEPLOY = os.path.join(SOURCE, "deploy")
MANIFEST = os.path.join(DEPLOY, "daemonset.yaml")
UNIT = os.path.join(DEPLOY, "pydi-agent.service")
README = os.path.join(DEPLOY, "README.md")
NAMESPACE = "pydi-system"
# The only host paths the agent may see besides /proc (hostPID).
ALLOWED_HOST_PATHS = {"/sys/kernel/btf"}


@pytest.fixture(scope="module")
def agent_caps():
    """[{name, why}] as the agent reports them."""
    caps = pydi_json("agent", "--list-caps", timeout=20)["capabilities"]
    names = [c["name"] for c in caps]
    assert caps, "the agent lists no capabilities"
    assert len(set(names)) == len(names), f"duplicates in {names}"
    for c in caps:
        assert c["name"].startswith("CAP_") and c["name"].isupper(), c
        assert c["why"].strip() and "\n" not in c["why"], c
    return caps


@pytest.fixture(scope="module")
def cap_names(agent_caps):
    return {c["name"] for c in agent_caps}


@pytest.fixture(scope="module")
def docs():
    with open(MANIFEST) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]


def one(docs, kind, name=None):
    found = [d for d in docs if d["kind"] == kind
             and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@pytest.fixture(scope="module")
def daemonset(docs):
    return one(docs, "DaemonSet")


@pytest.fixture(scope="module")
def pod(daemonset):
    return daemonset["spec"]["template"]["spec"]


@pytest.fixture(scope="module")
def container(pod):
    assert len(pod["containers"]) == 1, "one container: the agent"
    return pod["containers"][0]


def k8s_cap(name):
    """Kubernetes writes capabilities with or without the CAP_ prefix."""
    return name if name.startswith("CAP_") else "CAP_" + name


def test_manifest_objects_live_in_one_namespace(docs):
    one(docs, "Namespace", NAMESPACE)
    for d in docs:
        assert d["apiVersion"] and d["metadata"]["name"], d
        if d["kind"] != "Namespace":
            assert d["metadata"].get("namespace") == NAMESPACE, d["metadata"]


def test_daemonset_sees_every_process_of_the_node(daemonset, pod):
    assert daemonset["apiVersion"] == "apps/v1"
    labels = daemonset["spec"]["template"]["metadata"]["labels"]
    for key, value in daemonset["spec"]["selector"]["matchLabels"].items():
        assert labels.get(key) == value, "the selector must match the pod template"
    assert pod["hostPID"] is True
    assert not pod.get("hostNetwork"), "the agent needs no host network"
    assert {"operator": "Exists"} in pod["tolerations"], "tolerate every taint: run on all nodes"


def test_container_capabilities_are_exactly_the_agents(container, cap_names):
    sc = container["securityContext"]
    caps = sc["capabilities"]
    assert caps["drop"] == ["ALL"]
    added = [k8s_cap(c) for c in caps["add"]]
    assert len(set(added)) == len(added), f"duplicates in {caps['add']}"
    assert set(added) == cap_names
    assert sc["privileged"] is False
    assert sc["readOnlyRootFilesystem"] is True
    # The API server refuses allowPrivilegeEscalation: false with SYS_ADMIN.
    assert sc.get("allowPrivilegeEscalation") is not False


def test_agent_command_reads_the_mounted_config(container):
    cmd = container["command"] + container.get("args", [])
    assert cmd[:2] == ["/usr/local/bin/pydi", "agent"]
    config = cmd[cmd.index("--config") + 1]
    assert config in {m["mountPath"] for m in container["volumeMounts"]}, \
        f"--config {config} is not a mounted file"


def test_mounts_reference_declared_volumes(pod, container):
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert len(volumes) == len(pod["volumes"]), "volume names must be unique"
    mounted = set()
    for m in container["volumeMounts"]:
        assert m["name"] in volumes, f"mount {m['mountPath']} names no volume"
        assert m["mountPath"].startswith("/")
        mounted.add(m["name"])
    assert mounted == set(volumes), f"unused volumes: {set(volumes) - mounted}"
    for v in volumes.values():
        if "hostPath" in v:
            path = v["hostPath"]["path"]
            assert path in ALLOWED_HOST_PATHS, f"host path {path} is not justified in README"
            for m in container["volumeMounts"]:
                if m["name"] == v["name"]:
                    assert m.get("readOnly") is True, f"{path} must be mounted read-only"


def test_referenced_objects_exist_in_the_file(docs, pod, container):
    one(docs, "ServiceAccount", pod["serviceAccountName"])
    referenced = {v["configMap"]["name"] for v in pod["volumes"] if "configMap" in v}
    for env in container.get("env", []):
        ref = env.get("valueFrom", {}).get("configMapKeyRef")
        if ref:
            referenced.add(ref["name"])
    assert {"pydi-probes", "pydi-agent-config"} <= referenced
    for name in referenced:
        one(docs, "ConfigMap", name)


def test_agent_config_points_at_the_mounts(docs, pod, container):
    config = json.loads(one(docs, "ConfigMap", "pydi-agent-config")["data"]["agent.json"])
    with open(os.path.join(SOURCE, "schemas", "agent-config.schema.json")) as f:
        jsonschema.validate(config, json.load(f))
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    probes = [n for n, v in volumes.items()
              if v.get("configMap", {}).get("name") == "pydi-probes"]
    assert len(probes) == 1
    assert config["config_dir"] == mounts[probes[0]]["mountPath"] == "/etc/pydi/probes.d"
    socket_dir = posixpath.dirname(config["control_socket"])
    writable = [m for m in mounts.values()
                if m["mountPath"] == socket_dir and not m.get("readOnly")]
    assert writable, f"no writable mount at {socket_dir} for the control socket"
    assert config["otlp_endpoint"].startswith("http")


def test_optional_di_api_url(container):
    env = {e["name"]: e for e in container.get("env", [])}
    ref = env["OTEL_AWS_DYNAMIC_INSTRUMENTATION_API_URL"]["valueFrom"]["configMapKeyRef"]
    assert ref["optional"] is True


def test_resources_are_bounded(container):
    res = container["resources"]
    assert res["limits"]["memory"] == "128Mi"
    assert res["requests"]["memory"] == "40Mi"
    assert res["requests"]["cpu"] == "50m"


def unit_settings(path):
    """{key: [values]} of the [Service] section, with systemd's rule that an
    empty assignment resets a list."""
    settings, section = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line[0] in "#;":
                continue
            if line.startswith("["):
                section = line
                continue
            key, _, value = line.partition("=")
            if section != "[Service]":
                continue
            if value == "":
                settings[key] = []
            else:
                settings.setdefault(key, []).append(value)
    return settings


def unit_caps(settings, key):
    caps = set()
    for value in settings.get(key, []):
        assert not value.startswith("~"), f"{key}: an inverted list grants everything else"
        caps |= set(value.split())
    return caps


def test_systemd_unit_grants_exactly_the_agents_caps(cap_names):
    settings = unit_settings(UNIT)
    assert settings["ExecStart"] == ["/usr/local/bin/pydi agent --config /etc/pydi/agent.json"]
    assert settings["Restart"] == ["on-failure"]
    assert unit_caps(settings, "CapabilityBoundingSet") == cap_names
    assert unit_caps(settings, "AmbientCapabilities") == cap_names
    # The agent must see every process and /proc/sys/kernel/yama.
    assert "ProtectProc" not in settings and "ProcSubset" not in settings


def test_readme_explains_every_capability(agent_caps):
    with open(README) as f:
        text = f.read()
    for c in agent_caps:
        assert c["name"] in text, f"deploy/README.md does not explain {c['name']}"


def test_agent_refuses_to_start_without_a_capability(agent_caps, tmp_path):
    """caps_check at start: drop each listed capability in turn from the
    bounding and inheritable sets (uid 0 keeps the rest) and the agent exits
    non-zero with that capability named."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is missing"
    probes = tmp_path / "probes.d"
    probes.mkdir()
    config = tmp_path / "agent.json"
    config.write_text(json.dumps({"config_dir": str(probes),
                                  "control_socket": str(tmp_path / "agent.sock")}))
    for cap in agent_caps:
        short = cap["name"][len("CAP_"):].lower()
        argv = [setpriv, f"--inh-caps=-{short}", f"--bounding-set=-{short}", "--",
                PYDI, "agent", "--config", str(config)]
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=20)
        except subprocess.TimeoutExpired:
            pytest.fail(f"without {cap['name']} the agent started and ran instead of refusing")
        assert proc.returncode != 0, f"without {cap['name']}: exit 0\n{proc.stderr}"
        assert cap["name"] in proc.stderr + proc.stdout, \
            f"without {cap['name']} the error does not name it: {proc.stderr}{proc.stdout}"
