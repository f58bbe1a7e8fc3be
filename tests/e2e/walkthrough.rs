//! Issue 8, test 1: the original lab's walkthrough, typed with stock kubectl
//! on the user's laptop (the client namespace), checking what the user
//! sees: kubectl's tables, and curl answers from every node's NodePort and
//! from the LoadBalancer address.

use std::collections::BTreeSet;

use anyhow::{Context, Result, ensure};
use paddock_testkit::lab::{KubectlVersion, Lab};
use paddock_testkit::timings::Timings;

use super::*;

/// The walkthrough with one kubectl, leaving the cluster as it found it.
pub fn walkthrough(lab: &Lab, version: KubectlVersion) -> Result<()> {
    let k = lab.kubectl(version)?;
    let mut timings = Timings::start(&format!("the walkthrough with kubectl {}", k.version()));
    let pod_nodes = pod_nodes(lab);

    // kubectl run nginx --image=nginx; kubectl get po -o wide
    let out = k.run(&["run", "nginx", "--image=nginx"])?;
    ensure!(out.contains("pod/nginx created"), "{out}");
    let pod = timed(&mut timings, "pod nginx Running and Ready", || {
        wait_pods_ready(
            &k,
            &["--field-selector", "metadata.name=nginx"],
            1,
            POD_READY,
        )
    })?
    .remove(0);
    ensure!(
        pod.ready == "1/1" && pod.status == "Running",
        "get po -o wide shows {pod:?}"
    );
    ensure!(pod.ip.starts_with("10.244."), "no pod IP in {pod:?}");
    ensure!(
        pod_nodes.contains(&pod.node),
        "{pod:?} is not on a node for pods ({pod_nodes:?})"
    );

    // kubectl expose pod nginx --type=NodePort --port=80; curl from every node's address
    let out = k.run(&["expose", "pod", "nginx", "--type=NodePort", "--port=80"])?;
    ensure!(out.contains("service/nginx exposed"), "{out}");
    let port = node_port(&k, "nginx")?;
    let services = k.run(&["get", "svc", "nginx"])?;
    ensure!(
        services.contains("NodePort") && services.contains(&format!("80:{port}/TCP")),
        "{services}"
    );
    timed(&mut timings, "endpoints of nginx", || {
        wait_endpoints(&k, "nginx", std::slice::from_ref(&pod.ip), PROGRAMMED)
    })?;
    let first = format!("http://{}:{port}/", lab.nodes[0].ip);
    timed(&mut timings, "first answer through the NodePort", || {
        wait_served(&lab.client, &first, PROGRAMMED)
    })?;
    for node in &lab.nodes {
        let url = format!("http://{}:{port}/", node.ip);
        let reply = wait_served(&lab.client, &url, PROGRAMMED)
            .with_context(|| format!("the NodePort on {}", node.name))?;
        ensure!(
            reply.served_by == "nginx",
            "{url} was served by {reply:?}, not the nginx pod"
        );
    }
    for node in &lab.nodes {
        let rules = nat_rules(node)?;
        ensure!(
            rules.contains("default/nginx cluster IP"),
            "{} has no rules for service nginx:\n{rules}",
            node.name
        );
    }

    // kubectl create deployment deploy-nginx --image=nginx; kubectl scale ... --replicas=3
    let out = k.run(&["create", "deployment", "deploy-nginx", "--image=nginx"])?;
    ensure!(
        out.contains("deployment.apps/deploy-nginx created"),
        "{out}"
    );
    let out = k.run(&["scale", "deployment", "deploy-nginx", "--replicas=3"])?;
    ensure!(out.contains("deployment.apps/deploy-nginx scaled"), "{out}");
    let pods = timed(
        &mut timings,
        "3 deploy-nginx pods Running and Ready",
        || wait_pods_ready(&k, &["-l", "app=deploy-nginx"], 3, POD_READY),
    )?;
    let nodes = distinct(pods.iter().map(|p| p.node.as_str()));
    ensure!(
        nodes == pod_nodes,
        "3 replicas should run one per node of {pod_nodes:?}: {pods:?}"
    );
    let deployments = k.run(&["get", "deployment", "deploy-nginx"])?;
    ensure!(deployments.contains("3/3"), "{deployments}");

    // kubectl expose deployment deploy-nginx --type=LoadBalancer --port=80
    expose_load_balancer(&k, "deploy-nginx")?;
    let lb_ip = timed(&mut timings, "EXTERNAL-IP of deploy-nginx", || {
        wait_external_ip(&k, "deploy-nginx", PROGRAMMED)
    })?;
    ensure!(
        lb_ip.starts_with("192.168.56.2"),
        "{lb_ip} is not from the pool"
    );
    let services = k.run(&["get", "svc", "deploy-nginx"])?;
    ensure!(
        services.contains("LoadBalancer") && services.contains(&lb_ip),
        "{services}"
    );
    let pod_ips: Vec<String> = pods.iter().map(|p| p.ip.clone()).collect();
    timed(&mut timings, "endpoints of deploy-nginx", || {
        wait_endpoints(&k, "deploy-nginx", &pod_ips, PROGRAMMED)
    })?;
    let lb_url = format!("http://{lb_ip}/");
    timed(&mut timings, "first answer from the EXTERNAL-IP", || {
        wait_served(&lab.client, &lb_url, PROGRAMMED)
    })?;
    let served = tally(&lab.client, &lb_url, 30)?;
    let names = distinct(pods.iter().map(|p| p.name.as_str()));
    ensure!(
        served.keys().cloned().collect::<BTreeSet<_>>() == names,
        "30 requests to {lb_url} reached {served:?}, not all of {names:?}"
    );

    // kubectl delete each: gone, and so are their rules
    delete(&k, "pod", "nginx")?;
    delete(&k, "service", "nginx")?;
    delete(&k, "deployment", "deploy-nginx")?;
    delete(&k, "service", "deploy-nginx")?;
    timed(&mut timings, "deployment's pods gone", || {
        wait_pods_gone(&k, &["-l", "app=deploy-nginx"], POD_READY)
    })?;
    for node in &lab.nodes {
        let url = format!("http://{}:{port}/", node.ip);
        wait_unserved(&lab.client, &url, PROGRAMMED)?;
    }
    wait_unserved(&lab.client, &lb_url, PROGRAMMED)?;
    for node in &lab.nodes {
        let rules = nat_rules(node)?;
        for service in ["default/nginx", "default/deploy-nginx"] {
            ensure!(
                !rules.contains(&format!("{service} cluster IP")),
                "{} still has rules for {service}:\n{rules}",
                node.name
            );
        }
    }
    Ok(())
}

/// The node's nat table, whichever iptables flavour the proxy chose.
fn nat_rules(node: &paddock_testkit::lab::Node) -> Result<String> {
    let mut all = String::new();
    for save in ["iptables-legacy-save", "iptables-nft-save"] {
        all.push_str(&node.run(save, &["-t", "nat"])?);
    }
    Ok(all)
}
