//! CNI: the network list from the configured directory, run by exec'ing
//! the standard plugins as the CNI spec says (ADD in order with each
//! plugin's result passed on, DEL in reverse with the cached result).

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// Where the runtime finds CNI plugins and the network configuration.
#[derive(Clone, Debug)]
pub struct Cni {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
}

/// What one pod's network call needs besides the network list.
pub struct Attachment<'a> {
    pub container_id: &'a str,
    pub netns: &'a Path,
    /// `K8S_POD_NAMESPACE` and friends.
    pub args: Vec<(&'static str, String)>,
    /// `portMappings` for plugins with that capability.
    pub port_mappings: Vec<Value>,
}

const IFNAME: &str = "eth0";

impl Cni {
    /// The first network list in the conf dir (by file name): a
    /// `.conflist`, or a single plugin's `.conf`/`.json` made into a list.
    /// `None` when there is none yet.
    pub fn load(&self) -> Result<Option<Value>> {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&self.conf_dir) {
            Ok(entries) => entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    matches!(
                        p.extension().and_then(|e| e.to_str()),
                        Some("conflist" | "conf" | "json")
                    )
                })
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", self.conf_dir.display()));
            }
        };
        files.sort();
        let Some(file) = files.first() else {
            return Ok(None);
        };
        let text =
            std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
        let mut config: Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", file.display()))?;
        if config.get("plugins").is_none() {
            config = json!({
                "cniVersion": config.get("cniVersion").cloned().unwrap_or(json!("0.4.0")),
                "name": config.get("name").cloned().unwrap_or(json!("")),
                "plugins": [config],
            });
        }
        if !config["plugins"].is_array() || config["name"].as_str().is_none_or(str::is_empty) {
            bail!(
                "{}: a network list needs a name and plugins",
                file.display()
            );
        }
        Ok(Some(config))
    }

    /// ADD: runs every plugin of `list` in order; returns the last result.
    pub async fn add(&self, list: &Value, attachment: &Attachment<'_>) -> Result<Value> {
        let mut result: Option<Value> = None;
        for plugin in plugins(list) {
            let config = plugin_config(list, plugin, result.as_ref(), attachment);
            result = Some(self.exec("ADD", plugin, &config, attachment).await?);
        }
        result.ok_or_else(|| anyhow!("the network list has no plugins"))
    }

    /// DEL: runs every plugin of `list` in reverse, with ADD's `result`.
    pub async fn del(
        &self,
        list: &Value,
        result: Option<&Value>,
        attachment: &Attachment<'_>,
    ) -> Result<()> {
        let mut errors = Vec::new();
        for plugin in plugins(list).iter().rev() {
            let config = plugin_config(list, plugin, result, attachment);
            if let Err(e) = self.exec("DEL", plugin, &config, attachment).await {
                errors.push(format!("{e:#}"));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            bail!("CNI DEL: {}", errors.join("; "))
        }
    }

    async fn exec(
        &self,
        command: &str,
        plugin: &Value,
        config: &Value,
        attachment: &Attachment<'_>,
    ) -> Result<Value> {
        let kind = plugin["type"]
            .as_str()
            .ok_or_else(|| anyhow!("a CNI plugin without a type"))?;
        let binary = self
            .bin_dirs
            .iter()
            .map(|d| d.join(kind))
            .find(|p| p.is_file())
            .ok_or_else(|| anyhow!("CNI plugin {kind} not found in {:?}", self.bin_dirs))?;
        let cni_path = std::env::join_paths(&self.bin_dirs)?;
        let args: Vec<String> = std::iter::once("IgnoreUnknown=1".to_string())
            .chain(attachment.args.iter().map(|(k, v)| format!("{k}={v}")))
            .collect();
        let mut child = tokio::process::Command::new(&binary)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", attachment.container_id)
            .env("CNI_NETNS", attachment.netns)
            .env("CNI_IFNAME", IFNAME)
            .env("CNI_ARGS", args.join(";"))
            .env("CNI_PATH", cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {}", binary.display()))?;
        let mut stdin = child.stdin.take().context("plugin stdin")?;
        stdin.write_all(&serde_json::to_vec(config)?).await?;
        drop(stdin);
        let out = child.wait_with_output().await?;
        if !out.status.success() {
            let message = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .map(|e| {
                    format!(
                        "{} {}",
                        e["msg"].as_str().unwrap_or(""),
                        e["details"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&out.stderr).into_owned());
            bail!("CNI {command} {kind}: {}", message.trim());
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&out.stdout)
            .with_context(|| format!("CNI {command} {kind}: bad result"))
    }
}

fn plugins(list: &Value) -> &[Value] {
    list["plugins"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A plugin's stdin: its own config plus the list's name and version, the
/// previous result, and the runtime config its capabilities ask for.
fn plugin_config(
    list: &Value,
    plugin: &Value,
    prev: Option<&Value>,
    attachment: &Attachment<'_>,
) -> Value {
    let mut config = plugin.clone();
    config["name"] = list["name"].clone();
    config["cniVersion"] = list["cniVersion"].clone();
    if let Some(prev) = prev.filter(|p| !p.is_null()) {
        config["prevResult"] = prev.clone();
    }
    if plugin["capabilities"]["portMappings"] == json!(true) {
        config["runtimeConfig"] = json!({ "portMappings": attachment.port_mappings });
    }
    config
}

/// The pod's IPs from a CNI result: IPv4 first.
pub fn pod_ips(result: &Value) -> Vec<String> {
    let mut ips: Vec<String> = result["ips"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip["address"].as_str())
        .filter_map(|cidr| cidr.split('/').next())
        .map(str::to_string)
        .collect();
    ips.sort_by_key(|ip| ip.contains(':'));
    ips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_plugin_conf_becomes_a_list_and_the_first_file_wins() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("paddock-cni-{}", crate::state::new_id()));
        std::fs::create_dir_all(&dir)?;
        let cni = Cni {
            conf_dir: dir.clone(),
            bin_dirs: vec![],
        };
        assert!(cni.load()?.is_none());
        std::fs::write(
            dir.join("20-b.conf"),
            r#"{"cniVersion":"0.4.0","name":"b","type":"bridge"}"#,
        )?;
        let list = cni.load()?.expect("a list");
        assert_eq!(list["name"], "b");
        assert_eq!(list["plugins"][0]["type"], "bridge");
        std::fs::write(
            dir.join("10-a.conflist"),
            r#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"loopback"}]}"#,
        )?;
        assert_eq!(cni.load()?.expect("a list")["name"], "a");
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }

    #[test]
    fn plugins_get_the_previous_result_and_their_capabilities() {
        let list = json!({"cniVersion":"1.0.0","name":"n","plugins":[
            {"type":"bridge"},{"type":"portmap","capabilities":{"portMappings":true}}]});
        let attachment = Attachment {
            container_id: "c",
            netns: Path::new("/x"),
            args: vec![],
            port_mappings: vec![json!({"hostPort":8080,"containerPort":80,"protocol":"tcp"})],
        };
        let prev = json!({"ips":[{"address":"10.88.0.2/16"}]});
        let bridge = plugin_config(&list, &list["plugins"][0], None, &attachment);
        assert_eq!(bridge["name"], "n");
        assert!(bridge.get("runtimeConfig").is_none());
        let portmap = plugin_config(&list, &list["plugins"][1], Some(&prev), &attachment);
        assert_eq!(portmap["prevResult"], prev);
        assert_eq!(
            portmap["runtimeConfig"]["portMappings"][0]["hostPort"],
            8080
        );
        assert_eq!(
            pod_ips(&json!({"ips":[{"address":"fd00::2/64"},{"address":"10.88.0.2/16"}]})),
            ["10.88.0.2", "fd00::2"]
        );
    }
}
