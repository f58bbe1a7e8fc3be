//! Upstream's API semantics as stock kubectl 1.20.2 and 1.32 see them
//! against `paddock server --disable-agent`: defaults in `-o yaml`,
//! validation errors, Table columns, `kubectl apply` patches, OpenAPI for
//! `explain` and client-side validation.

use anyhow::{Result, ensure};
use paddock_testkit::kubectl::Kubectl;
use paddock_testkit::server::Server;

const PADDOCK: &str = env!("CARGO_BIN_EXE_paddock");

fn start() -> Result<Server> {
    Server::start(PADDOCK.as_ref(), &[])
}

/// kubectl 1.20.2 and 1.32 for `server` (their caches in its data directory).
fn both(server: &Server) -> Result<[Kubectl; 2]> {
    Ok([
        Kubectl::v1_20(&server.kubeconfig(), server.data_dir())?,
        Kubectl::v1_32(&server.kubeconfig(), server.data_dir()),
    ])
}

/// kubectl's stderr (and stdout) of a command that must fail.
fn failure(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let out = match stdin {
        Some(input) => {
            use std::io::Write;
            let mut child = k
                .command(args)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()?;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(input.as_bytes())?;
            child.wait_with_output()?
        }
        None => k.output(args)?,
    };
    ensure!(
        !out.status.success(),
        "kubectl {} {args:?} should fail",
        k.version
    );
    Ok(format!(
        "{}{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    ))
}

fn deployment(
    name: &str,
    image: &str,
    extra_container_fields: &str,
    strategy: &str,
    volume: &str,
) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 2
{strategy}  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
      - name: nginx
        image: {image}
{extra_container_fields}      - name: sidecar
        image: busybox
        args: [sleep, inf]
      volumes:
      - name: data
{volume}"
    )
}

#[test]
fn defaults_and_tables_look_like_upstream() -> Result<()> {
    let server = start()?;
    let [k20, k32] = both(&server)?;
    k32.run(&["run", "nginx", "--image=nginx"])?;
    let pod = k32.run(&["get", "pod", "nginx", "-o", "yaml"])?;
    for line in [
        "imagePullPolicy: Always",
        "terminationMessagePath: /dev/termination-log",
        "dnsPolicy: ClusterFirst",
        "restartPolicy: Always",
        "schedulerName: default-scheduler",
        "terminationGracePeriodSeconds: 30",
        "enableServiceLinks: true",
        "serviceAccountName: default",
        "key: node.kubernetes.io/not-ready",
        "tolerationSeconds: 300",
        "qosClass: BestEffort",
    ] {
        ensure!(pod.contains(line), "`{line}` missing from\n{pod}");
    }

    for k in [&k20, &k32] {
        let wide = k.run(&["get", "pods", "-o", "wide"])?;
        let header: Vec<&str> = wide
            .lines()
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        ensure!(
            header
                == [
                    "NAME",
                    "READY",
                    "STATUS",
                    "RESTARTS",
                    "AGE",
                    "IP",
                    "NODE",
                    "NOMINATED",
                    "NODE",
                    "READINESS",
                    "GATES"
                ],
            "kubectl {}: {wide}",
            k.version
        );
        let row: Vec<&str> = wide
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        ensure!(row[..4] == ["nginx", "0/1", "Pending", "0"], "{wide}");
    }

    let lb = "apiVersion: v1\nkind: Service\nmetadata: {name: lb}\nspec:\n  type: LoadBalancer\n  ports: [{port: 80, targetPort: 8080}]\n";
    k32.run_with_input(&["apply", "-f", "-"], lb)?;
    let services = k20.run(&["get", "svc", "lb"])?;
    let row: Vec<&str> = services
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    ensure!(
        row[1] == "LoadBalancer" && row[3] == "<pending>",
        "{services}"
    );
    ensure!(
        row[4].starts_with("80:3") && row[4].ends_with("/TCP"),
        "{services}"
    );
    let svc = k32.run(&[
        "get",
        "svc",
        "lb",
        "-o",
        "jsonpath={.spec.externalTrafficPolicy} {.spec.sessionAffinity} {.spec.ipFamilyPolicy}",
    ])?;
    ensure!(svc == "Cluster None SingleStack", "{svc}");

    k32.run_with_input(
        &["apply", "-f", "-"],
        &deployment("web", "nginx:1.25", "", "", "        emptyDir: {}\n"),
    )?;
    let deploy = k20.run(&["get", "deploy", "web", "-o", "wide"])?;
    let header: Vec<&str> = deploy
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    ensure!(
        header
            == [
                "NAME",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "AGE",
                "CONTAINERS",
                "IMAGES",
                "SELECTOR"
            ],
        "{deploy}"
    );
    ensure!(
        deploy.contains("nginx,sidecar")
            && deploy.contains("nginx:1.25,busybox")
            && deploy.contains("app=web"),
        "{deploy}"
    );
    let strategy = k32.run(&["get", "deploy", "web", "-o", "jsonpath={.spec.strategy.rollingUpdate.maxSurge} {.spec.revisionHistoryLimit} {.spec.progressDeadlineSeconds}"])?;
    ensure!(strategy == "25% 10 600", "{strategy}");
    let namespaces = k32.run(&["get", "ns", "default"])?;
    ensure!(
        namespaces
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .nth(1)
            == Some("Active"),
        "{namespaces}"
    );
    Ok(())
}

#[test]
fn apply_removes_what_the_manifest_dropped() -> Result<()> {
    let server = start()?;
    for k in both(&server)? {
        let name = format!("web-{}", k.version.replace('.', "-"));
        let first = deployment(
            &name,
            "nginx:1.24",
            "        ports:\n        - containerPort: 80\n        - containerPort: 8080\n        env:\n        - {name: A, value: \"1\"}\n        - {name: B, value: \"2\"}\n",
            "",
            "        emptyDir: {}\n",
        );
        let second = deployment(
            &name,
            "nginx:1.25",
            "        ports:\n        - containerPort: 80\n        env:\n        - {name: B, value: \"2\"}\n        - {name: C, value: \"3\"}\n",
            "  strategy:\n    type: Recreate\n",
            "        configMap: {name: cfg}\n",
        );
        k.run_with_input(&["apply", "-f", "-"], &first)?;
        let out = k.run_with_input(&["apply", "-f", "-"], &second)?;
        ensure!(out.contains("configured"), "{out}");
        let fields = [
            ".spec.template.spec.containers[0].image",
            ".spec.template.spec.containers[0].ports[*].containerPort",
            ".spec.template.spec.containers[0].env[*].name",
            ".spec.strategy",
            ".spec.template.spec.volumes[0]",
            ".spec.template.spec.containers[1].name",
        ];
        let template: String = fields.iter().map(|f| format!("{{{f}}}|")).collect();
        let got = k.run(&[
            "get",
            "deploy",
            &name,
            "-o",
            &format!("jsonpath={template}"),
        ])?;
        let want = "nginx:1.25|80|B C|{\"type\":\"Recreate\"}|{\"configMap\":{\"defaultMode\":420,\"name\":\"cfg\"},\"name\":\"data\"}|sidecar|";
        ensure!(
            got == want,
            "kubectl {}:\n got {got}\nwant {want}",
            k.version
        );

        k.run(&[
            "set",
            "image",
            &format!("deployment/{name}"),
            "nginx=nginx:1.26",
        ])?;
        let images = k.run(&[
            "get",
            "deploy",
            &name,
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ])?;
        ensure!(images == "nginx:1.26 busybox", "{images}");
    }
    Ok(())
}

#[test]
fn bad_objects_are_rejected_with_upstreams_reasons() -> Result<()> {
    let server = start()?;
    let [k20, k32] = both(&server)?;
    let invalid = "apiVersion: v1
kind: Pod
metadata: {name: Bad_Name}
spec:
  restartPolicy: Sometimes
  containers:
  - name: web
    ports: [{containerPort: 70000}]
";
    for k in [&k20, &k32] {
        let err = failure(k, &["create", "-f", "-", "--validate=false"], Some(invalid))?;
        for line in [
            "The Pod \"Bad_Name\" is invalid",
            "metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters",
            "spec.containers[0].image: Required value",
            "spec.containers[0].ports[0].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive",
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"",
        ] {
            ensure!(
                err.contains(line),
                "kubectl {}: `{line}` missing from\n{err}",
                k.version
            );
        }
    }

    let typo = deployment(
        "typo",
        "nginx",
        "        ports:\n        - containerPort: 80\n          protocl: TCP\n",
        "",
        "        emptyDir: {}\n",
    );
    // kubectl 1.20 validates on the client against /openapi/v2 (protobuf) …
    let err = failure(&k20, &["create", "-f", "-"], Some(&typo))?;
    ensure!(
        err.contains("unknown field \"protocl\" in io.k8s.api.core.v1.ContainerPort"),
        "{err}"
    );
    // … kubectl 1.32 asks the server for strict field validation.
    let err = failure(&k32, &["create", "-f", "-"], Some(&typo))?;
    ensure!(err.contains("strict decoding error: unknown field \"spec.template.spec.containers[0].ports[0].protocl\""), "{err}");

    let mismatch = deployment("mismatch", "nginx", "", "", "        emptyDir: {}\n")
        .replace("matchLabels: {app: mismatch}", "matchLabels: {app: other}");
    let err = failure(&k32, &["create", "-f", "-"], Some(&mismatch))?;
    ensure!(
        err.contains("spec.template.metadata.labels: Invalid value:")
            && err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    k32.run_with_input(
        &["apply", "-f", "-"],
        &deployment("web", "nginx", "", "", "        emptyDir: {}\n"),
    )?;
    let err = failure(
        &k32,
        &[
            "patch",
            "deploy",
            "web",
            "--type=json",
            "-p",
            "[{\"op\":\"test\",\"path\":\"/spec/replicas\",\"value\":9}]",
        ],
        None,
    )?;
    ensure!(err.contains("/spec/replicas"), "{err}");
    let err = failure(
        &k32,
        &[
            "patch",
            "deploy",
            "web",
            "-p",
            "{\"spec\":{\"selector\":{\"matchLabels\":{\"app\":\"x\"}},\"template\":{\"metadata\":{\"labels\":{\"app\":\"x\"}}}}}",
        ],
        None,
    )?;
    ensure!(
        err.contains("spec.selector: Invalid value") && err.contains("field is immutable"),
        "{err}"
    );
    let listed = k32.run(&["get", "deploy", "-o", "name"])?;
    ensure!(
        listed.trim() == "deployment.apps/web",
        "nothing invalid was stored: {listed}"
    );
    Ok(())
}

#[test]
fn explain_reads_the_openapi_documents() -> Result<()> {
    let server = start()?;
    let [k20, k32] = both(&server)?;
    let ports = k20.run(&["explain", "pods.spec.containers.ports"])?;
    ensure!(
        ports.contains("containerPort\t<integer> -required-"),
        "{ports}"
    );
    ensure!(ports.contains("KIND:     Pod"), "{ports}");
    let strategy = k32.run(&["explain", "deployment.spec.strategy"])?;
    ensure!(
        strategy.contains("FIELD: strategy <DeploymentStrategy>")
            && strategy.contains("rollingUpdate"),
        "{strategy}"
    );
    let service = k32.run(&["explain", "svc.spec.type"])?;
    ensure!(service.contains("ExternalName"), "{service}");
    Ok(())
}
