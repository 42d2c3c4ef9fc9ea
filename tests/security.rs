//! Bad input and bad identities are refused, and nothing is written.

mod common;

use std::time::Duration;

use common::*;
use hotline_node::config::ClientConfig;
use hotline_node::{tls, transport};
use hotline_proto::v1::raft_client::RaftClient;
use hotline_proto::v1::tickets_client::TicketsClient;
use hotline_proto::v1::{RaftBatch, RaftEnvelope};
use tonic::Code;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_named_and_not_written() {
    let mut cl = Cluster::init(3, 7600, |_| {});
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader");
    type Edit = Box<dyn Fn(&mut hotline_proto::v1::AcceptRequest)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("region", Box::new(|r| r.region = "999999".into())),
        ("region", Box::new(|r| r.region = String::new())),
        ("kind", Box::new(|r| r.kind = 0)),
        ("category", Box::new(|r| r.category = String::new())),
        ("text", Box::new(|r| r.text = "x".repeat(20_000))),
        ("phone", Box::new(|r| r.phone = "110".into())),
    ];
    for (field, f) in cases {
        let mut r = request("路灯不亮");
        f(&mut r);
        let e = c.accept(r).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{field}: {e}");
        assert!(e.message().starts_with(field), "{field}: {}", e.message());
    }
    assert!(
        c.list(Default::default()).await.unwrap().tickets.is_empty(),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_certificates_are_refused() {
    let mut cl = Cluster::init(3, 7700, |_| {});
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader");
    let cfg = ClientConfig::load(&cl.client_config()).unwrap();
    let files = cfg.tls.clone().unwrap();
    let addr = &cfg.endpoints[0].address;

    // No client certificate: the first RPC fails (TLS 1.3 checks it after
    // the handshake).
    let no_cert = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(
            std::fs::read(&files.ca).unwrap(),
        ))
        .domain_name(tls::node_name(1));
    let ch = transport::endpoint(format!("https://{addr}"), Some(no_cert))
        .unwrap()
        .connect_lazy();
    let e = TicketsClient::new(ch)
        .list(hotline_proto::v1::ListTicketsRequest::default())
        .await;
    assert!(e.is_err(), "a client without a certificate is refused");

    // The client certificate may not speak raft.
    let as_client = tls::client_config(&files, &tls::node_name(1)).unwrap();
    let ch = transport::endpoint(format!("https://{addr}"), Some(as_client))
        .unwrap()
        .connect_lazy();
    let batch = RaftBatch {
        from_node: 2,
        leadership_epoch: 1,
        envelopes: vec![RaftEnvelope {
            group_id: 310114,
            message: Default::default(),
            ..Default::default()
        }],
    };
    let e = RaftClient::new(ch)
        .stream(tokio_stream::iter(vec![batch.clone()]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");

    // Node 3's certificate claiming to be node 2 is refused too.
    let ch = cl.channel_as(3, 1, addr);
    let e = RaftClient::new(ch)
        .stream(tokio_stream::iter(vec![batch]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(
        cl.log(1).contains("raft stream refused"),
        "refusal is logged with the peer"
    );

    // A node's certificate may read another node's status and drills, but
    // not change the cluster: adding itself to a group (which would then
    // send it the group's raft traffic), drills, leadership.
    use hotline_proto::v1::admin_client::AdminClient;
    use hotline_proto::v1::{ConfChangeRequest, Drill, FaultsRequest, StatusRequest};
    let mut admin = AdminClient::new(cl.channel_as(3, 1, addr));
    admin.status(StatusRequest {}).await.unwrap();
    admin.faults(FaultsRequest {}).await.unwrap();
    let e = admin
        .change_membership(ConfChangeRequest {
            group_id: 1,
            node_id: 3,
            op: "remove".into(),
            force: false,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(
        e.message()
            .starts_with("change_membership: only the operators' client certificate"),
        "{e}"
    );
    let e = admin
        .set_faults(Drill {
            generation: u64::MAX,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    // Nor act on tickets or a group's deadline rules: a node calls only
    // `lookup` on another (a first-contact center asking the owner).
    use hotline_proto::v1::{ListTicketsRequest, LookupRequest, SetPolicyRequest};
    let mut tickets = TicketsClient::new(cl.channel_as(3, 1, addr));
    let e = tickets
        .accept(hotline_proto::v1::AcceptRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    assert!(
        e.message()
            .starts_with("accept: only the operators' client certificate"),
        "{e}"
    );
    let e = tickets
        .set_policy(SetPolicyRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = tickets
        .list(ListTicketsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied, "{e}");
    let e = tickets
        .lookup(LookupRequest {
            id: "310114-20261205-000001".into(),
            phone_last4: "0000".into(),
            group_id: 0,
        })
        .await
        .unwrap_err();
    assert_ne!(e.code(), Code::PermissionDenied, "a node may look up: {e}");
    assert!(
        cl.log(1)
            .contains("call refused: not the operators' client certificate"),
        "refusal is logged with the peer"
    );
    // The operators' certificate sets drills, but only signed ones: the
    // nodes pass drills on to each other, so an unsigned drill (what a node
    // could forge) counts nowhere. `hotline fault …` signs.
    let mut as_operator = AdminClient::new(c.channel(0));
    let e = as_operator
        .set_faults(Drill {
            generation: 1,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e}");
    assert!(
        e.message().starts_with("signature: a drill must carry"),
        "{e}"
    );
    let out = cl.cli(&[
        "fault",
        "partition",
        "--between",
        "1",
        "--and",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["accepted"], 3, "signed by the CLI: {out}");
    cl.cli(&["fault", "heal"]);
    // Nothing changed: the group still has its three voters.
    let s = c.status_of(0).await.unwrap();
    assert_eq!(s.groups[0].voters.len(), 3, "{s:?}");
}
