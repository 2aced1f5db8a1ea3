"""deploy/k8s/ rendered by a real ``kustomize build`` agrees with the Procfile (same command per process), with
schema/settings.py (every KCM_* variable is a setting, and the ConfigMap's values load), with the API's URL map
(probe paths), with the footprint benchmark (resources), with the supervisors' drain and failover rules and with
deploy/Dockerfile (the numeric non-root user every pod, and docker-compose.yml, runs as)."""
from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from schema.settings import Settings

ROOT = Path(__file__).resolve().parents[3]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZE_VERSION = "v5.8.0"
# the Procfile's process types and the component label of the workload that runs each
COMPONENTS = {"release": "migrate", "web": "web", "supervisor": "supervisor", "lag": "lag",
              "deadletters": "deadletters"}
# every pod of these resolves ${file:...}/${env:...} references: the API's validate, the workers, the lag monitor
# (consumer credentials) and the rq worker (a retried dead letter goes through the processors again)
RESOLVES_REFERENCES = ("web", "supervisor", "lag", "deadletters")
CREDENTIALS = ("KCM_DATABASE_URL", "KCM_REDIS_URL", "KCM_BOOTSTRAP_ADMIN_TOKEN")
MB = 10**6
QUANTITY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9, "": 1}


def kustomize() -> str:
    found = shutil.which("kustomize")
    if found:
        return found
    gopath = subprocess.run(["go", "env", "GOPATH"], capture_output=True, text=True).stdout.strip() \
        if shutil.which("go") else ""
    candidate = Path(gopath or Path.home() / "go") / "bin" / "kustomize"
    assert candidate.exists(), (f"kustomize not found: go install sigs.k8s.io/kustomize/kustomize/v5@"
                                f"{KUSTOMIZE_VERSION} (.ci/run installs it)")
    return str(candidate)


@pytest.fixture(scope="module")
def rendered() -> list[dict]:
    out = subprocess.run([kustomize(), "build", str(K8S)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def procfile() -> dict[str, str]:
    lines = (ROOT / "Procfile").read_text().splitlines()
    return dict(line.split(": ", 1) for line in lines if line.strip() and not line.startswith("#"))


def of_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d["kind"] == kind]


def workloads(docs: list[dict]) -> dict[str, dict]:
    """component label -> the Deployment or Job running it."""
    found = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "Job"):
            component = doc["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]
            assert component not in found, f"two workloads for {component}"
            found[component] = doc
    return found


def pod(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]


def container(doc: dict) -> dict:
    containers = pod(doc)["containers"]
    assert len(containers) == 1, doc["metadata"]["name"]
    return containers[0]


def configmap(docs: list[dict]) -> dict:
    (found,) = of_kind(docs, "ConfigMap")
    return found


def environment_names(docs: list[dict], c: dict) -> set[str]:
    """The variables a container gets: its env entries and every key of the ConfigMaps it loads."""
    names = {e["name"] for e in c.get("env", [])}
    maps = {m["metadata"]["name"]: m for m in of_kind(docs, "ConfigMap")}
    for source in c.get("envFrom", []):
        if "configMapRef" in source:
            names |= {source.get("prefix", "") + key for key in maps[source["configMapRef"]["name"]]["data"]}
    return names


def settings_of(docs: list[dict]) -> Settings:
    return Settings.from_env(configmap(docs)["data"])


def quantity(raw: str | int) -> float:
    text = str(raw)
    if text.endswith("m"):
        return int(text[:-1]) / 1000
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()
    return float(number) * QUANTITY[unit]


def procfile_as_kubernetes(line: str) -> list[str]:
    """The Procfile line as an exec-form command: the shell's ${NAME:-default} is Kubernetes' $(NAME)."""
    return [re.sub(r"\$\{(\w+):-[^}]*\}", r"$(\1)", word) for word in shlex.split(line)]


def test_every_procfile_process_runs_its_procfile_command(rendered):
    lines = procfile()
    running = workloads(rendered)
    assert set(COMPONENTS) == set(lines)
    assert set(running) == set(COMPONENTS.values())
    for name, component in COMPONENTS.items():
        c = container(running[component])
        expected = procfile_as_kubernetes(lines[name])
        if name == "web":  # docker-compose.yml's bind: every interface of the pod, not the config's 127.0.0.1
            assert c["command"] == expected + ["--bind", "0.0.0.0:8000"], c["command"]
        else:
            assert c["command"] == expected, (name, c["command"])
        assert "args" not in c, name
        # Kubernetes expands $(NAME) only when NAME is in the container's env; else the text stays as it is
        for variable in re.findall(r"\$\((\w+)\)", " ".join(c["command"])):
            assert variable in environment_names(rendered, c), (name, variable)
    assert of_kind(rendered, "Job")[0]["spec"]["template"]["spec"]["restartPolicy"] in ("OnFailure", "Never")


def test_every_kcm_variable_the_manifests_set_is_a_setting_and_the_configmap_loads(rendered):
    known = set(Settings.names())
    for component, doc in workloads(rendered).items():
        c = container(doc)
        set_here = {n for n in environment_names(rendered, c) if n.startswith("KCM_")}
        assert set_here <= known, (component, sorted(set_here - known))
        for entry in c.get("env", []):
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] == entry["name"] and ref["key"] in known, entry
        for source in c.get("envFrom", []):
            if "secretRef" in source:  # ${env:...} references: only names under the reference prefix
                assert source["prefix"] == Settings.from_env({}).secret_env_prefix, component
                assert source["secretRef"].get("optional") is True, component
    data = configmap(rendered)["data"]
    assert set(data) <= known
    assert not set(CREDENTIALS) & set(data), "credentials belong in the kcm-env Secret, not the ConfigMap"
    settings = settings_of(rendered)  # raises SettingsError on a value of the wrong kind
    assert settings.log_format == "json" and settings.secrets_dir == data["KCM_SECRETS_DIR"]


def test_credentials_come_from_the_secret_and_references_from_a_mounted_secret_volume(rendered):
    secrets_dir = settings_of(rendered).secrets_dir
    # Kubernetes puts service-account tokens under /var/run/secrets (/run is the same directory in most images)
    assert not secrets_dir.startswith(("/run/secrets", "/var/run/secrets")), secrets_dir
    running = workloads(rendered)
    for component, doc in running.items():
        spec, c = pod(doc), container(doc)
        assert spec["automountServiceAccountToken"] is False, component
        env = {e["name"]: e for e in c.get("env", [])}
        for name in ("KCM_DATABASE_URL", "KCM_REDIS_URL"):
            if name in env:
                ref = env[name]["valueFrom"]["secretKeyRef"]
                assert ref["name"] == "kcm-env" and not ref.get("optional"), (component, name)
        assert "KCM_DATABASE_URL" in env, component
        if component not in RESOLVES_REFERENCES:
            continue
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = [m for m in c["volumeMounts"] if m["mountPath"] == secrets_dir]
        assert len(mounts) == 1 and mounts[0]["readOnly"] is True, component
        assert volumes[mounts[0]["name"]]["secret"]["secretName"] == "kcm-consumer-secrets", component
    assert "KCM_BOOTSTRAP_ADMIN_TOKEN" in {e["name"] for e in container(running["web"])["env"]}


def test_the_probes_are_the_apis_health_paths_on_the_port_gunicorn_binds(rendered, sqlite_url, redis_client,
                                                                        redis_test_url):
    from tests.integration.api.conftest import make_app

    app = make_app(sqlite_url, redis_test_url)
    try:
        rules = {rule.rule for rule in app.url_map.iter_rules()}
    finally:
        app.extensions["kcm"].close()
    web = workloads(rendered)["web"]
    c = container(web)
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert {"/readyz", "/healthz"} <= rules
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    bind_port = int(c["command"][c["command"].index("--bind") + 1].rsplit(":", 1)[1])
    for probe in ("readinessProbe", "livenessProbe"):
        assert ports[c[probe]["httpGet"]["port"]] == bind_port, probe
    (service,) = of_kind(rendered, "Service")
    assert service["spec"]["selector"].items() <= web["spec"]["template"]["metadata"]["labels"].items()
    assert [ports[p["targetPort"]] for p in service["spec"]["ports"]] == [bind_port]


def test_three_supervisors_each_named_by_its_pod_drain_within_the_grace_period_under_a_pdb(rendered):
    running = workloads(rendered)
    supervisor = running["supervisor"]
    settings = settings_of(rendered)
    assert supervisor["spec"]["replicas"] == 3
    env = {e["name"]: e for e in container(supervisor)["env"]}
    assert env["KCM_SUPERVISOR_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    # the drain: every worker's warm stop (stopwaitsecs), then the slots change hands within a lease TTL
    grace = pod(supervisor)["terminationGracePeriodSeconds"]
    assert grace >= settings.stopwaitsecs + settings.supervisor_lease_ttl + 10, grace
    assert supervisor["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (pdb,) = of_kind(rendered, "PodDisruptionBudget")
    selector = pdb["spec"]["selector"]["matchLabels"]
    selected = [c for c, doc in running.items()
                if selector.items() <= doc["spec"]["template"]["metadata"]["labels"].items()]
    assert selected == ["supervisor"]
    assert pdb["spec"]["maxUnavailable"] == 1
    # one lag monitor writes the lag and health keys: never two, not even during a rollout
    lag = running["lag"]
    assert lag["spec"]["replicas"] == 1 and lag["spec"]["strategy"] == {"type": "Recreate"}
    for component, doc in running.items():
        if doc["kind"] == "Deployment":
            assert doc["spec"]["selector"]["matchLabels"].items() <= \
                doc["spec"]["template"]["metadata"]["labels"].items(), component


def test_every_container_has_requests_and_limits_and_the_supervisor_fits_its_workers(rendered):
    for component, doc in workloads(rendered).items():
        resources = container(doc)["resources"]
        for what in ("cpu", "memory"):
            request, limit = resources["requests"][what], resources["limits"][what]
            assert quantity(request) <= quantity(limit), (component, what)
    footprint = json.loads((ROOT / "bench" / "results" / "footprint.json").read_text())["figures"]
    settings = settings_of(rendered)
    assert settings.max_workers > 0, "KCM_MAX_WORKERS caps the workers a supervisor pod's memory is sized for"
    needed = (footprint["supervisor_rss_mb"] + settings.max_workers * footprint["worker_rss_mb_max"]) * MB
    supervisor = container(workloads(rendered)["supervisor"])["resources"]
    assert quantity(supervisor["requests"]["memory"]) >= needed, needed / MB


def image_user() -> tuple[int, int]:
    """deploy/Dockerfile's one ``USER uid:gid``, numeric, and the user it creates with those ids."""
    dockerfile = (ROOT / "deploy" / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)\s*$", dockerfile, re.M)
    assert len(users) == 1, users
    match = re.fullmatch(r"(\d+):(\d+)", users[0])
    assert match, f"USER {users[0]}: Kubernetes' runAsNonRoot can verify only a numeric uid:gid"
    uid, gid = int(match[1]), int(match[2])
    assert uid > 0 and gid > 0, users[0]
    assert re.search(rf"groupadd [^&]*--gid {gid} kcm", dockerfile), "the image makes its group with that gid"
    assert re.search(rf"useradd [^&]*--uid {uid} --gid {gid} [^&]*kcm", dockerfile), "and its user with that uid"
    return uid, gid


def test_every_pod_runs_as_the_images_numeric_non_root_user(rendered):
    uid, gid = image_user()
    expected = {"runAsUser": uid, "runAsGroup": gid, "fsGroup": gid}
    for component, doc in workloads(rendered).items():
        pod_context = pod(doc).get("securityContext", {})
        context = {**pod_context, **container(doc)["securityContext"]}
        assert context.get("runAsNonRoot") is True, component
        for key, value in expected.items():
            for where in (pod_context, container(doc)["securityContext"]):
                if key in where:
                    assert where[key] == value, (component, key, where[key])
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    kcm_services = {name: service for name, service in compose.items()
                    if service.get("build", {}).get("dockerfile") == "deploy/Dockerfile"}
    assert {"migrate", "web", "supervisor", "lag", "deadletters"} <= set(kcm_services)
    for name, service in kcm_services.items():
        if "user" in service:
            assert str(service["user"]) in (str(uid), f"{uid}:{gid}"), name
    assert f"`USER {uid}:{gid}`" in (ROOT / "docs" / "deploy.md").read_text()


def test_the_deploy_doc_quotes_the_procfile_and_the_manifests_figures(rendered):
    doc = (ROOT / "docs" / "deploy.md").read_text()
    for name, line in procfile().items():
        assert f"| `{name}` | `{line}` |" in doc, name
    running = workloads(rendered)
    grace = pod(running["supervisor"])["terminationGracePeriodSeconds"]
    assert f"terminationGracePeriodSeconds: {grace}`" in doc
    settings = settings_of(rendered)
    assert f"`KCM_MAX_WORKERS` = {settings.max_workers} idle workers" in doc
    assert f"`KCM_SECRETS_DIR` is `{settings.secrets_dir}`" in doc
    assert f"kustomize v{KUSTOMIZE_VERSION[1:]}" in doc
