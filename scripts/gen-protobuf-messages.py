#!/usr/bin/env python3
"""Writes apiserver/src/protobuf/messages.rs: the protobuf field table of the
kinds the apiserver serves (and the messages they reach), read from the prost
types of the `k8s-pb` crate (a dev-dependency of paddock-apiserver), which
are generated from upstream's .proto files.

Run from the repository root after changing the served kinds or k8s-pb:
    scripts/gen-protobuf-messages.py
The apiserver's tests check the table against k8s-pb's own encoding.
"""

import json
import pathlib
import re
import subprocess
import sys

# Messages clients send as request bodies: the served kinds, and what their
# subresources take.
ROOTS = [
    "api.core.v1.Namespace", "api.core.v1.Node", "api.core.v1.Pod", "api.core.v1.Service",
    "api.core.v1.Endpoints", "api.core.v1.ConfigMap", "api.core.v1.Secret",
    "api.core.v1.ServiceAccount", "api.core.v1.Event", "api.core.v1.Binding",
    "api.apps.v1.Deployment", "api.apps.v1.ReplicaSet", "api.discovery.v1.EndpointSlice",
    "api.events.v1.Event", "api.coordination.v1.Lease", "api.autoscaling.v1.Scale",
    "api.policy.v1.Eviction", "apimachinery.pkg.apis.meta.v1.DeleteOptions",
]

WRAPPERS = {"Option", "Vec", "Box", "BTreeMap", "String"}


def k8s_pb_src():
    meta = json.loads(subprocess.check_output(
        ["cargo", "metadata", "--format-version", "1", "--offline"], text=True))
    for package in meta["packages"]:
        if package["name"] == "k8s-pb":
            return pathlib.Path(package["manifest_path"]).parent / "src", package["version"]
    sys.exit("k8s-pb is not in the dependency graph (a dev-dependency of paddock-apiserver)")


def strip_comments(text):
    return "\n".join(line for line in text.splitlines() if not line.strip().startswith("//"))


def struct_bodies(text):
    """(name, body) of each `pub struct Name { ... }`."""
    for match in re.finditer(r"pub struct (\w+) \{", text):
        depth, i = 1, match.end()
        while depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        yield match.group(1), text[match.end():i - 1]


FIELD = re.compile(
    r"#\[prost\((?P<attr>[^\]]*)\)\]\s*pub\s+(?:r#)?(?P<name>\w+)\s*:\s*(?P<type>.*?),\s*(?=#\[prost|$)",
    re.S)


def message_type(rust_type, module):
    """The full name (`api.core.v1.Container`) a field's Rust type names."""
    paths = [p for p in re.findall(r"((?:super::)*(?:\w+::)*[A-Z]\w*)", rust_type)
             if p.split("::")[-1] not in WRAPPERS]
    path = paths[-1].split("::")
    base = list(module)
    while path[0] == "super":
        path.pop(0)
        base.pop()
    return ".".join(base + path)


def parse(src):
    messages = {}
    for file in src.rglob("mod.rs"):
        module = file.parent.relative_to(src).parts
        if not module:
            continue
        for name, body in struct_bodies(strip_comments(file.read_text())):
            fields = []
            for field in FIELD.finditer(body.strip()):
                attr = field.group("attr")
                tag = int(re.search(r'tag = "(\d+)"', attr).group(1))
                kind_word = attr.split(",")[0].split("=")[0].strip()
                repeated = "repeated" in attr
                if kind_word == "btree_map":
                    value = re.search(r'btree_map = "string, (\w+)"', attr).group(1)
                    kind = ("map", value, message_type(field.group("type"), module) if value == "message" else None)
                elif kind_word == "message":
                    kind = ("message", message_type(field.group("type"), module))
                else:
                    kind = (kind_word,)
                fields.append((tag, field.group("name"), kind, repeated))
            messages[".".join(module + (name,))] = sorted(fields)
    return messages


def reachable(messages):
    seen, todo = set(), list(ROOTS)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        if name not in messages:
            sys.exit(f"{name} is not in k8s-pb")
        seen.add(name)
        for _, _, kind, _ in messages[name]:
            target = kind[1] if kind[0] == "message" else kind[2] if kind[0] == "map" else None
            if target:
                todo.append(target)
    return sorted(seen)


# The scalar types the served kinds use; a new one needs decode.rs support.
SCALARS = {"string": "String", "bytes": "Bytes", "bool": "Bool", "int32": "Int32", "int64": "Int64"}


def rust_kind(kind):
    if kind[0] == "message":
        return f'Kind::Message("io.k8s.{kind[1]}")'
    if kind[0] == "map":
        value = f'Value::Message("io.k8s.{kind[2]}")' if kind[1] == "message" else f"Value::{SCALARS[kind[1]]}"
        return f"Kind::Map({value})"
    if kind[0] not in SCALARS:
        sys.exit(f"scalar type {kind[0]} is not supported by apiserver/src/protobuf/decode.rs")
    return f"Kind::Scalar(Value::{SCALARS[kind[0]]})"


def main():
    src, version = k8s_pb_src()
    messages = parse(src)
    names = reachable(messages)
    out = [
        f"//! @generated by scripts/gen-protobuf-messages.py from k8s-pb {version}; do not edit.",
        "//! The protobuf fields of the messages request bodies of the served kinds",
        "//! are made of, sorted by message name and tag.",
        "",
        "use super::table::{Field, Kind, Message, Value};",
        "",
        "#[rustfmt::skip]",
        "pub static MESSAGES: &[Message] = &[",
    ]
    for name in sorted(f"io.k8s.{n}" for n in names):
        out.append(f'    Message {{ name: "{name}", fields: &[')
        for tag, field, kind, repeated in messages[name[len("io.k8s."):]]:
            out.append(f'        Field {{ tag: {tag}, name: "{field}", kind: {rust_kind(kind)}, repeated: {str(repeated).lower()} }},')
        out.append("    ] },")
    out.append("];")
    target = pathlib.Path("apiserver/src/protobuf/messages.rs")
    target.write_text("\n".join(out) + "\n")
    print(f"{target}: {len(names)} messages")


if __name__ == "__main__":
    main()
