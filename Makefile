# Paddock — see README.md. Every target runs as root on Debian 12 / Ubuntu.
SHELL := /bin/bash
CARGO ?= cargo
DATA_DIR ?= /var/lib/paddock
KUBECONFIG_OUT ?= /etc/paddock/kubeconfig.yaml

.PHONY: run test deps test-deps images bench build build-release lint fmt

## make run: install what is needed, build in release mode, start a one-node cluster
run: deps build-release
	scripts/run.sh target/release/paddock

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

build:
	$(CARGO) build --workspace --bins

build-release:
	$(CARGO) build --release --bin paddock

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all
