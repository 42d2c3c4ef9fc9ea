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

/// What a drill's signature covers: a context (so the signature means
/// nothing elsewhere), then the drill without its signature fields.
pub fn drill_signed_bytes(drill: &hotline_proto::v1::Drill) -> Vec<u8> {
    use prost::Message;
    let bare = hotline_proto::v1::Drill {
        generation: drill.generation,
        rules: drill.rules.clone(),
        ..Default::default()
    };
    let mut out = b"hotline drill v1\0".to_vec();
    out.extend(bare.encode_to_vec());
    out
}

/// Signs `drill` with the operators' client key in `files` (what `hotline
/// fault …` runs with), carrying the certificate for the nodes to check.
/// Call it on the drill as nodes will hold it (`faults::validate_drill`).
pub fn sign_drill(files: &TlsFiles, drill: &mut hotline_proto::v1::Drill) -> Result<(), String> {
    use rustls_pki_types::PrivateKeyDer;
    use rustls_pki_types::pem::PemObject;
    let cert = CertificateDer::from_pem_file(&files.cert)
        .map_err(|e| format!("{}: {e}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("{}: {e}", files.key.display()))?;
    let signer = key
        .choose_scheme(&[rustls::SignatureScheme::ECDSA_NISTP256_SHA256])
        .ok_or_else(|| format!("{}: not an ECDSA P-256 key", files.key.display()))?;
    drill.operator_cert = cert.to_vec();
    drill.signature = signer
        .sign(&drill_signed_bytes(drill))
        .map_err(|e| format!("signing the drill: {e}"))?;
    Ok(())
}

/// Checks drills against the cluster's CA: signed by a certificate the CA
/// issued to the operators' client (`client.hotline`), over this very drill.
pub struct DrillVerifier {
    clients: std::sync::Arc<dyn rustls::server::danger::ClientCertVerifier>,
}

impl DrillVerifier {
    pub fn new(files: &TlsFiles) -> Result<DrillVerifier, String> {
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        let certs = CertificateDer::pem_file_iter(&files.ca)
            .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        for c in certs {
            let c = c.map_err(|e| format!("{}: {e}", files.ca.display()))?;
            roots
                .add(c)
                .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        }
        let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(
            std::sync::Arc::new(roots),
            std::sync::Arc::new(rustls::crypto::ring::default_provider()),
        )
        .build()
        .map_err(|e| format!("{}: {e}", files.ca.display()))?;
        Ok(DrillVerifier { clients })
    }

    /// The error names the field (`operator_cert`, `signature`).
    pub fn verify(&self, drill: &hotline_proto::v1::Drill) -> Result<(), String> {
        if drill.operator_cert.is_empty() || drill.signature.is_empty() {
            return Err("signature: a drill must carry the operators' signature \
                        (`hotline fault …` signs with the client certificate)"
                .into());
        }
        let cert = CertificateDer::from(drill.operator_cert.as_slice());
        let now = rustls_pki_types::UnixTime::now();
        self.clients
            .verify_client_cert(&cert, &[], now)
            .map_err(|e| format!("operator_cert: {e}"))?;
        if !cert_names_client(&cert) {
            return Err(format!(
                "operator_cert: not the operators' client certificate ({CLIENT_NAME}): {:?}",
                presented_names(&cert)
            ));
        }
        let ee =
            webpki::EndEntityCert::try_from(&cert).map_err(|e| format!("operator_cert: {e}"))?;
        ee.verify_signature(
            webpki::ring::ECDSA_P256_SHA256,
            &drill_signed_bytes(drill),
            &drill.signature,
        )
        .map_err(|_| "signature: does not match the drill".to_string())
    }
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

    /// A drill counts only when the operators' key signed this very
    /// drill: unsigned, tampered with, or signed with a node's key (what a
    /// rogue node could do through the drill sync) is refused, naming
    /// the field.
    #[test]
    fn only_the_operators_sign_drills() {
        use hotline_proto::v1::{Drill, FaultAction, FaultRule};
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let (nodes, client) = create_pki(dir.path(), &[1, 2]).unwrap();
        let check = DrillVerifier::new(&client).unwrap();
        let drill = Drill {
            generation: 7,
            rules: vec![FaultRule {
                side_a: vec![1],
                side_b: vec![2],
                action: FaultAction::Partition as i32,
                ..Default::default()
            }],
            ..Default::default()
        };
        let e = check.verify(&drill).unwrap_err();
        assert!(e.starts_with("signature: a drill must carry"), "{e}");

        let mut signed = drill.clone();
        sign_drill(&client, &mut signed).unwrap();
        check.verify(&signed).unwrap();

        let mut tampered = signed.clone();
        tampered.rules.clear();
        let e = check.verify(&tampered).unwrap_err();
        assert_eq!(e, "signature: does not match the drill");
        let mut later = signed.clone();
        later.generation += 1;
        assert!(check.verify(&later).is_err(), "the generation is signed");

        let mut by_node = drill.clone();
        sign_drill(&nodes[0], &mut by_node).unwrap();
        let e = check.verify(&by_node).unwrap_err();
        assert!(
            e.starts_with("operator_cert: not the operators' client certificate"),
            "{e}"
        );

        // A key from another cluster's CA.
        let other = tempfile::tempdir().unwrap();
        let (_, stranger) = create_pki(other.path(), &[1]).unwrap();
        let mut foreign = drill.clone();
        sign_drill(&stranger, &mut foreign).unwrap();
        let e = check.verify(&foreign).unwrap_err();
        assert!(e.starts_with("operator_cert: "), "{e}");
    }

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
