//! Outgoing HTTPS: the certificate is checked against the name the guest
//! asked for, with the runtime's trusted roots. Servers are started here,
//! on 127.0.0.1, with certificates made here.

use std::sync::Arc;

use airssys_wasm_runtime::{Capability, Grants, PrepareOptions, Runtime, RuntimeConfig};
use airssys_wasm_test_guests::ESCAPE;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// An HTTPS server on 127.0.0.1 whose certificate names `names`; it answers
/// every request with `200 hello`. Returns its port and its certificate.
async fn server(names: &[&str]) -> (u16, Vec<u8>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|n| (*n).to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let der = cert.der().to_vec();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4096];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello",
                    )
                    .await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, der)
}

/// Run the escape guest's `fetch` of `https://127.0.0.1:PORT/` on a
/// runtime trusting `roots`; its exit status.
async fn fetch(port: u16, roots: &[Vec<u8>]) -> i32 {
    let mut config = RuntimeConfig::default().max_instances(4);
    for r in roots {
        config = config.tls_root(r.clone());
    }
    let rt = Runtime::new(config).unwrap();
    let grants = Grants::default()
        .allow(Capability::SystemCall("args".into()))
        .allow(Capability::NetworkOutbound(format!(
            "https://127.0.0.1:{port}"
        )));
    let guest = rt
        .load(
            "escape",
            &crate::read(ESCAPE),
            PrepareOptions::default()
                .grants(grants)
                .limits(crate::test_limits()),
        )
        .await
        .unwrap();
    let url = format!("https://127.0.0.1:{port}/");
    guest
        .run(vec!["escape".into(), "fetch".into(), url])
        .await
        .unwrap()
}

#[tokio::test]
async fn the_certificate_must_name_the_host_asked_for() {
    let (good, good_cert) = server(&["127.0.0.1"]).await;
    assert_eq!(
        fetch(good, std::slice::from_ref(&good_cert)).await,
        0,
        "a trusted certificate naming 127.0.0.1"
    );
    assert_eq!(fetch(good, &[]).await, 1, "a certificate nobody trusts");
    let (other, other_cert) = server(&["example.com"]).await;
    assert_eq!(
        fetch(other, &[other_cert]).await,
        1,
        "a trusted certificate for another name"
    );
}

#[test]
fn an_unusable_root_is_a_configuration_error() {
    let err = Runtime::new(RuntimeConfig::default().tls_root(b"not a certificate".to_vec()))
        .err()
        .unwrap();
    assert!(err.to_string().contains("TLS root certificate"), "{err}");
}
