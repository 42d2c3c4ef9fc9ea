//! The cluster's PKI (rcgen) and rustls/tonic TLS settings.
//!
//! Every node certificate names its node as the DNS name `node-{id}.hotline`
//! (plus `localhost` and 127.0.0.1 so loopback deployments verify); the
//! client certificate names `client.hotline`. Both are signed by one CA
//! created by `hotline cluster init`. Nodes require a client certificate
//! from everyone (mutual TLS); the Raft transport further requires the
//! certificate to name the node the messages claim to come from.

use std::path::Path;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};

use crate::config::TlsFiles;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("certificate generation: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// DNS name a node's certificate carries.
pub fn node_name(id: u64) -> String {
    format!("node-{id}.hotline")
}

pub const CLIENT_NAME: &str = "client.hotline";

/// Installs ring as rustls' process-wide crypto provider. tonic's server path
/// calls `ServerConfig::builder()`, which panics without one.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn write(path: &Path, text: &str) -> Result<(), TlsError> {
    std::fs::write(path, text).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn leaf(names: Vec<String>, common: &str) -> Result<CertificateParams, rcgen::Error> {
    let mut p = CertificateParams::new(names)?;
    p.subject_alt_names
        .push(SanType::IpAddress(std::net::IpAddr::from([127, 0, 0, 1])));
    p.distinguished_name.push(DnType::CommonName, common);
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    Ok(p)
}

/// Writes `ca.pem`, `node-{id}.{pem,key}` and `client.{pem,key}` into `dir`.
/// Returns the TLS files of each node and of the client.
pub fn create_pki(dir: &Path, nodes: &[u64]) -> Result<(Vec<TlsFiles>, TlsFiles), TlsError> {
    std::fs::create_dir_all(dir).map_err(|source| TlsError::Io {
        path: dir.display().to_string(),
        source,
    })?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "hotline cluster CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let ca_path = dir.join("ca.pem");
    write(&ca_path, &ca_cert.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    let issue = |stem: &str, params: CertificateParams| -> Result<TlsFiles, TlsError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &issuer)?;
        let files = TlsFiles {
            ca: ca_path.clone(),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        };
        write(&files.cert, &cert.pem())?;
        write(&files.key, &key.serialize_pem())?;
        Ok(files)
    };
    let mut out = Vec::new();
    for &id in nodes {
        let name = node_name(id);
        out.push(issue(
            &format!("node-{id}"),
            leaf(vec![name.clone(), "localhost".into()], &name)?,
        )?);
    }
    let client = issue("client", leaf(vec![CLIENT_NAME.into()], CLIENT_NAME)?)?;
    Ok((out, client))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Server side: our identity, and a client certificate required from every
/// caller, signed by the cluster CA.
pub fn server_config(files: &TlsFiles) -> Result<ServerTlsConfig, TlsError> {
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
        .client_ca_root(Certificate::from_pem(read(&files.ca)?)))
}

/// Client side: verify the server as `server_name`, present our identity.
pub fn client_config(files: &TlsFiles, server_name: &str) -> Result<ClientTlsConfig, TlsError> {
    Ok(ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&files.ca)?))
        .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
        .domain_name(server_name))
}

/// Does this (already CA-verified) certificate name node `id`?
pub fn cert_names_node(cert: &CertificateDer<'_>, id: u64) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(node_name(id)) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// Does this (already CA-verified) certificate name the operators' client
/// (`client.hotline`), not a node?
pub fn cert_names_client(cert: &CertificateDer<'_>) -> bool {
    let Ok(ee) = webpki::EndEntityCert::try_from(cert) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(CLIENT_NAME) else {
        return false;
    };
    ee.verify_is_valid_for_subject_name(&name).is_ok()
}

/// The DNS names a certificate presents, for logging who was refused (the
/// check itself is [`cert_names_node`]); empty if it does not parse.
pub fn presented_names(cert: &CertificateDer<'_>) -> Vec<String> {
    webpki::EndEntityCert::try_from(cert)
        .map(|ee| ee.valid_dns_names().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_certificates_name_their_node_only() {
        let dir = tempfile::tempdir().unwrap();
        let (nodes, client) = create_pki(dir.path(), &[1, 2]).unwrap();
        let der = |p: &Path| {
            let pem = std::fs::read_to_string(p).unwrap();
            let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
            CertificateDer::from(decode_b64(&b64))
        };
        let n1 = der(&nodes[0].cert);
        assert_eq!(presented_names(&n1)[0], node_name(1));
        assert!(cert_names_node(&n1, 1));
        assert!(!cert_names_node(&n1, 2));
        assert!(!cert_names_node(&der(&client.cert), 1));
    }

    fn decode_b64(s: &str) -> Vec<u8> {
        let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
        pem.push_str(s);
        pem.push_str("\n-----END CERTIFICATE-----\n");
        rustls_pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: CertificateDer<'static>| c.to_vec())
            .unwrap()
    }
}
