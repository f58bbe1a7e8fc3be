//! The server: PKI, store, registry and HTTPS listener put together, started
//! from a `Config` and stopped by `shutdown`. Other parts of `paddock server`
//! (controllers, the embedded agent and proxy) talk to it through `client()`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::alloc::{IpAllocator, PortAllocator};
use crate::auth::{TokenAuthenticator, server_config};
use crate::config::Config;
use crate::http::{AppState, listener, router};
use crate::pki::{JoinToken, Kubeconfig, MASTERS, Pki, Subject};
use crate::registry::{Bootstrap, Registry, fields, run_namespace_lifecycle};
use crate::storage::{SqliteStore, Store};

/// A running apiserver.
pub struct Server {
    local_addr: SocketAddr,
    advertise_address: IpAddr,
    kubeconfig: String,
    join_token: JoinToken,
    registry: Arc<Registry>,
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Server {
    /// Prepares the data directory (CA, certificates, join token, database),
    /// writes the admin kubeconfig and starts serving.
    pub async fn start(config: Config) -> Result<Server> {
        let server_dir = config.server_dir();
        let pki = Arc::new(Pki::load_or_create(&server_dir.join("tls"))?);
        let ca_pem = pki.ca_pem().to_string();
        let join_token =
            JoinToken::load_or_create(&server_dir.join("token"), &ca_pem, config.token.as_deref())
                .context("preparing the join token")?;
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&server_dir.join("db").join("state.db"), fields::indexer)
                .context("opening the store")?,
        );
        let registry = Arc::new(
            Registry::new(
                store,
                IpAllocator::new(config.service_cidr),
                PortAllocator::new(config.node_port_range.clone()),
            )
            .with_admission(config.admission),
        );
        let advertise = advertise_address(&config);
        registry
            .bootstrap(&Bootstrap {
                advertise_address: advertise,
                port: config.https_port,
            })
            .await
            .context("creating the cluster's built-in objects")?;

        let serving = pki.serving_cert(
            "kube-apiserver",
            &serving_dns_names(),
            &serving_ips(&config, advertise, registry.kubernetes_service_ip()),
        )?;
        pki.save("serving-kube-apiserver", &serving)?;
        let admin = pki.kept_client_cert(
            "client-admin",
            &Subject {
                common_name: "system:admin".into(),
                organizations: vec![MASTERS.into()],
            },
        )?;
        pki.kept_client_cert(
            "client-kube-apiserver-kubelet",
            &Subject {
                common_name: "kube-apiserver-kubelet-client".into(),
                organizations: vec![MASTERS.into()],
            },
        )?;
        let tls = Arc::new(server_config(&ca_pem, &serving.cert_pem, &serving.key_pem)?);

        let bind = SocketAddr::new(config.bind_address, config.https_port);
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("listening on {bind}"))?;
        let local_addr = listener.local_addr()?;
        let kubeconfig = Kubeconfig {
            server: &format!("https://{}", client_address(local_addr)),
            ca_pem: &ca_pem,
            client: &admin,
        }
        .render();
        if let Some(path) = &config.write_kubeconfig {
            write_kubeconfig(path, &kubeconfig)?;
        }

        let (stop, shutdown) = watch::channel(false);
        let state = Arc::new(AppState {
            registry: registry.clone(),
            pki,
            ca_pem: ca_pem.clone(),
            join_token: join_token.clone(),
            tokens: TokenAuthenticator::default(),
            server_address: SocketAddr::new(advertise, local_addr.port()).to_string(),
            shutdown: shutdown.clone(),
        });
        let mut tasks = JoinSet::new();
        tasks.spawn(listener::serve(
            listener,
            tls,
            router(state),
            shutdown.clone(),
        ));
        tasks.spawn(run_namespace_lifecycle(
            registry.clone(),
            ca_pem,
            shutdown.clone(),
        ));
        tasks.spawn(compact_periodically(
            registry.clone(),
            config.compaction.clone(),
            shutdown,
        ));
        tracing::info!(address = %local_addr, advertise = %advertise, "apiserver listening");
        Ok(Server {
            local_addr,
            advertise_address: advertise,
            kubeconfig,
            join_token,
            registry,
            stop,
            tasks,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address agents and Services reach the API at.
    pub fn advertise_address(&self) -> IpAddr {
        self.advertise_address
    }

    /// The API's URL on this machine (loopback when it listens on all
    /// addresses).
    pub fn local_url(&self) -> String {
        format!("https://{}", client_address(self.local_addr))
    }

    /// The admin kubeconfig (YAML).
    pub fn kubeconfig(&self) -> &str {
        &self.kubeconfig
    }

    pub fn join_token(&self) -> &str {
        self.join_token.as_str()
    }

    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// A client with the admin identity, over loopback HTTPS.
    pub async fn client(&self) -> Result<kube::Client> {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig)
            .context("parsing the admin kubeconfig")?;
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .context("loading the admin kubeconfig")?;
        kube::Client::try_from(config).context("building the admin client")
    }

    /// Stops serving: open requests get a few seconds to finish.
    pub async fn shutdown(mut self) {
        self.stop.send_replace(true);
        while self.tasks.join_next().await.is_some() {}
    }
}

async fn compact_periodically(
    registry: Arc<Registry>,
    compaction: crate::config::Compaction,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(compaction.interval);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = crate::shutdown::signalled(&mut shutdown) => return,
        }
        match registry.store().compact(compaction.retention).await {
            Ok(revision) => tracing::debug!(revision, "compacted the store"),
            Err(e) => tracing::warn!("compacting the store: {e}"),
        }
    }
}

fn write_kubeconfig(path: &Path, kubeconfig: &str) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::pki::write_private(path, kubeconfig)
}

/// Where local clients reach a listener bound to `addr`.
fn client_address(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), addr.port())
    } else {
        addr
    }
}

/// `--advertise-address`, else `--node-ip`, else a specific bind address,
/// else this host's first non-loopback IPv4 address, else loopback.
fn advertise_address(config: &Config) -> IpAddr {
    config
        .advertise_address
        .or(config.node_ip)
        .or_else(|| (!config.bind_address.is_unspecified()).then_some(config.bind_address))
        .or_else(first_host_address)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

fn first_host_address() -> Option<IpAddr> {
    nix::ifaddrs::getifaddrs()
        .ok()?
        .filter_map(|ifa| ifa.address?.as_sockaddr_in().map(|a| IpAddr::V4(a.ip())))
        .find(|ip| !ip.is_loopback())
}

fn serving_dns_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .map(String::from)
    .to_vec();
    if let Ok(host) = nix::unistd::gethostname()
        && let Some(host) = host.to_str()
        && !host.is_empty()
        && !names.iter().any(|n| n == host)
    {
        names.push(host.to_lowercase());
    }
    names
}

fn serving_ips(config: &Config, advertise: IpAddr, service_ip: Ipv4Addr) -> Vec<IpAddr> {
    let mut ips = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        advertise,
        IpAddr::V4(service_ip),
    ];
    ips.extend(config.node_ip);
    if !config.bind_address.is_unspecified() {
        ips.push(config.bind_address);
    }
    ips.sort();
    ips.dedup();
    ips
}
