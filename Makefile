# Paddock — see README.md. Every target runs as root on Debian 12 / Ubuntu.
SHELL := /bin/bash
# Rust from rustup (scripts/deps.sh installs it there when cargo is missing).
export PATH := $(HOME)/.cargo/bin:$(PATH)
CARGO ?= cargo
DATA_DIR ?= /var/lib/paddock
KUBECONFIG_OUT ?= /etc/paddock/kubeconfig.yaml
PADDOCK_ARGS ?=

.PHONY: run stop test deps test-deps images bench bench-proxy containerd-config build build-release lint fmt install lab-up lab-down

## make run: install what is needed, build in release mode, start a one-node cluster
## (paddock server in the background), wait until its node is Ready; PADDOCK_ARGS adds
## flags to `paddock server` (e.g. --node-ip, --private-registry)
run: deps build-release
	DATA_DIR=$(DATA_DIR) KUBECONFIG_OUT=$(KUBECONFIG_OUT) scripts/run.sh target/release/paddock $(PADDOCK_ARGS)

## make stop: stop what `make run` started (its pods keep running, their state stays in
## DATA_DIR; the next `make run` picks them up)
stop:
	DATA_DIR=$(DATA_DIR) KUBECONFIG_OUT=$(KUBECONFIG_OUT) scripts/run.sh --stop

## make test: install test dependencies, build, and pass the whole suite
test: test-deps images
	$(CARGO) nextest run --workspace --profile ci

deps:
	scripts/deps.sh run

test-deps:
	scripts/deps.sh test

## make images: the test images (nginx, busybox, pause) built from Debian packages, and
## a docker-registry storage holding them, in target/images (cached)
images: test-deps
	tests/images/build.sh target/images

## make bench: side-by-side benchmarks (root); Markdown tables in target/bench/
bench: test-deps images build-release
	target/release/paddock bench runtime --out target/bench/runtime.md
	target/release/paddock bench proxy --out target/bench/proxy.md
	target/release/paddock bench apiserver --out target/bench/apiserver.md
	target/release/paddock bench scheduler --out target/bench/scheduler.md
	target/release/paddock bench agent --out target/bench/agent.md

## make install: the binary in /usr/local/bin, systemd units for a server (master) and an
## agent (worker) with their settings in /etc/default/paddock-{server,agent}
install: deps build-release
	scripts/install.sh target/release/paddock

## make lab-up: the end-to-end tests' lab in network namespaces of this machine (master
## 192.168.56.10, workers .11-.13, your "laptop" .1 with the registry), left running;
## (RUNTIME=containerd: containerd on the workers); make lab-down removes it (and whatever a
## killed test run left behind)
# (paddock-lab is built with paddock: the testkit alone picks no Kubernetes API version)
lab-up: test-deps images
	$(CARGO) build --release --bin paddock --bin paddock-lab
	target/release/paddock-lab up --paddock target/release/paddock

lab-down:
	$(CARGO) build --release --bin paddock --bin paddock-lab
	target/release/paddock-lab down

## make containerd-config: /etc/containerd/config.toml (and certs.d mirrors) for a
## Paddock node on containerd 1.6 + runc; REGISTRY_MIRROR, CNI_CONF_DIR etc. as in
## scripts/containerd-config.sh
containerd-config:
	scripts/containerd-config.sh /etc/containerd

## make bench-proxy: iptables against IPVS mode in UML VMs, 100 to 10k services;
## target/bench/proxy-modes.md and .png
bench-proxy: test-deps build-release
	target/release/paddock bench proxy --modes iptables,ipvs

build:
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --release --bin paddock

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
