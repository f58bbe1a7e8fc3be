//! Making certificates with rcgen.

use std::net::IpAddr;
use std::path::Path;

use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration, Utc};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// A PEM certificate and its PEM private key.
#[derive(Clone)]
pub struct CertAndKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// Who a client certificate names: user = CN, groups = O.
#[derive(Debug, Clone)]
pub struct Subject {
    pub common_name: String,
    pub organizations: Vec<String>,
}

const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Kept certificates are renewed when they expire within this many days.
const RENEW_BEFORE_DAYS: i64 = 90;

/// Valid from yesterday (tolerating clock skew) for `days` days.
fn validity(params: &mut CertificateParams, days: i64) {
    let day = |t: DateTime<Utc>| rcgen::date_time_ymd(t.year(), t.month() as u8, t.day() as u8);
    let now = Utc::now();
    params.not_before = day(now - Duration::days(1));
    params.not_after = day(now + Duration::days(days));
}

pub fn new_ca(name: &str) -> Result<CertAndKey> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(
        DnType::CommonName,
        format!("{name}@{}", Utc::now().timestamp()),
    );
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    validity(&mut params, CA_VALIDITY_DAYS);
    let key = KeyPair::generate().context("generating the CA key")?;
    let cert = params.self_signed(&key).context("signing the CA")?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

fn leaf(cn: &str, organizations: &[String], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    for org in organizations {
        dn.push(DnType::OrganizationName, org.as_str());
    }
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![usage];
    params.use_authority_key_identifier_extension = true;
    validity(&mut params, LEAF_VALIDITY_DAYS);
    params
}

fn sign(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Result<CertAndKey> {
    let key = KeyPair::generate().context("generating a key")?;
    let cert = params
        .signed_by(&key, issuer)
        .context("signing a certificate")?;
    Ok(CertAndKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

pub fn client(issuer: &Issuer<'_, KeyPair>, subject: &Subject) -> Result<CertAndKey> {
    let params = leaf(
        &subject.common_name,
        &subject.organizations,
        ExtendedKeyUsagePurpose::ClientAuth,
    );
    sign(&params, issuer)
}

pub fn serving(
    issuer: &Issuer<'_, KeyPair>,
    cn: &str,
    dns_names: &[String],
    ips: &[IpAddr],
) -> Result<CertAndKey> {
    let mut params = leaf(cn, &[], ExtendedKeyUsagePurpose::ServerAuth);
    for name in dns_names {
        let name = name
            .clone()
            .try_into()
            .with_context(|| format!("{name:?} is not a DNS name"))?;
        params.subject_alt_names.push(SanType::DnsName(name));
    }
    params
        .subject_alt_names
        .extend(ips.iter().copied().map(SanType::IpAddress));
    sign(&params, issuer)
}

/// The certificate and key at these paths, if both exist and the certificate
/// is not about to expire.
pub fn load_valid(cert_path: &Path, key_path: &Path) -> Result<Option<CertAndKey>> {
    if !cert_path.exists() || !key_path.exists() {
        return Ok(None);
    }
    let cert_pem = std::fs::read_to_string(cert_path)
        .with_context(|| format!("reading {}", cert_path.display()))?;
    let key_pem = std::fs::read_to_string(key_path)
        .with_context(|| format!("reading {}", key_path.display()))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let cert = pem
        .parse_x509()
        .with_context(|| format!("parsing {}", cert_path.display()))?;
    let expires = cert.validity().not_after.timestamp();
    let renew_at = (Utc::now() + Duration::days(RENEW_BEFORE_DAYS)).timestamp();
    Ok((expires > renew_at).then_some(CertAndKey { cert_pem, key_pem }))
}
