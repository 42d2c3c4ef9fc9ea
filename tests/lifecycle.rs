//! End-to-end: the whole 12345 ticket lifecycle over gRPC and mutual TLS on a
//! 3-node cluster of real `hotline node` processes, with the leader killed
//! in the middle; notifications delivered to a webhook on loopback.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hotline_node::client::Client;
use hotline_proto::v1::{
    AcceptRequest, Actor, Answer, Archive, Callback, Closure, DecideExtension, Dispatch, Extend,
    Kind, ListTicketsRequest, Merge, Priority, Refer, ReferReason, Reopen, Reply, ReportRequest,
    Resolution, Return, ReviewReturn, Role, Satisfaction, Sign, Status, Supervise, Ticket,
    TicketCommand, Urge, ticket_command::Op,
};
use tonic::Code;

fn center() -> Option<Actor> {
    Some(Actor {
        id: "话务员007".into(),
        role: Role::CallTaker as i32,
    })
}

fn unit(u: &str) -> Option<Actor> {
    Some(Actor {
        id: u.into(),
        role: Role::Unit as i32,
    })
}

async fn run(c: &Client, id: &str, actor: Option<Actor>, reason: &str, op: Op) -> Ticket {
    let cmd = TicketCommand {
        ticket_id: id.into(),
        actor,
        reason: reason.into(),
        op: Some(op),
    };
    match c.execute(cmd, 0).await {
        Ok(t) => t,
        Err(s) => panic!("{id}: {:?} {}", s.code(), s.message()),
    }
}

fn accept_req(kind: Kind, category: &str, text: &str, phone: &str) -> AcceptRequest {
    AcceptRequest {
        region: "310114".into(),
        kind: kind as i32,
        category: category.into(),
        text: text.into(),
        phone: phone.into(),
        actor: center(),
        ..Default::default()
    }
}

const LUDENG: &str = "嘉定区路灯管理所";
const CHENGGUAN: &str = "嘉定区城管执法局";
const ZHENGFU: &str = "嘉定镇街道办事处";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_path_of_the_lifecycle_survives_a_leader_kill() {
    let hook = Webhook::start().await;
    let url = hook.url();
    let mut cl = Cluster::init(3, 7800, move |cfg| {
        cfg.notify.sender = "webhook".into();
        cfg.notify.url = url.clone();
        cfg.notify.interval_ms = 100;
    });
    cl.start_all();
    let c = cl.client();
    wait_leader(&c, Duration::from_secs(10))
        .await
        .expect("leader");

    // 直接答复: a consult answered at intake.
    let t1 = c
        .accept(accept_req(
            Kind::Consult,
            "民政",
            "居住证怎么办理",
            "13800001111",
        ))
        .await
        .unwrap();
    let t1 = run(
        &c,
        &t1.id,
        center(),
        "",
        Op::Answer(Answer {
            text: "携带身份证到社区事务受理中心办理".into(),
        }),
    )
    .await;
    assert_eq!(
        (t1.status, t1.closure),
        (Status::Closed as i32, Closure::Answered as i32)
    );

    // 转119: an emergency referred.
    let t2 = c
        .accept(accept_req(
            Kind::Help,
            "城乡建设",
            "楼道冒烟",
            "13800002222",
        ))
        .await
        .unwrap();
    let t2 = run(
        &c,
        &t2.id,
        center(),
        "疑似火情，立即转119",
        Op::Refer(Refer {
            reason: ReferReason::Emergency as i32,
            target: "119".into(),
        }),
    )
    .await;
    assert_eq!(
        (t2.status, t2.refer_target.as_str()),
        (Status::Closed as i32, "119")
    );

    // An illegal transition names the state and the command.
    let e = c
        .execute(
            TicketCommand {
                ticket_id: t2.id.clone(),
                actor: unit(LUDENG),
                reason: String::new(),
                op: Some(Op::Reply(Reply {
                    unit: LUDENG.into(),
                    text: "x".into(),
                })),
            },
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{}", e.message());
    assert!(
        e.message().contains("closed") && e.message().contains("reply"),
        "{}",
        e.message()
    );
    // A wrong field is InvalidArgument naming it.
    let e = c
        .execute(
            TicketCommand {
                ticket_id: t2.id.clone(),
                actor: center(),
                reason: "x".into(),
                op: Some(Op::Refer(Refer {
                    reason: ReferReason::Emergency as i32,
                    target: "999".into(),
                })),
            },
            0,
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("refer.target"), "{}", e.message());

    // The main path with an extension: dispatch → sign → extend → approve → reply → callback → archive.
    let t3 = c
        .accept(accept_req(
            Kind::Complaint,
            "城乡建设",
            "路灯不亮三天了",
            "13800003333",
        ))
        .await
        .unwrap();
    // Watch t3 on a follower that survives the leader kill below.
    let leader_now = wait_leader(&c, Duration::from_secs(5)).await.unwrap();
    let follower = c.nodes.iter().position(|n| n.id != leader_now).unwrap();
    let survivor_id = c.nodes[follower].id;
    let mut watch = c.watch_on(follower, 0, &t3.id, 0).await.unwrap();
    let t3 = run(
        &c,
        &t3.id,
        center(),
        "",
        Op::Dispatch(Dispatch {
            lead_unit: LUDENG.into(),
            assisting_units: vec![ZHENGFU.into()],
            category: String::new(),
        }),
    )
    .await;
    assert_eq!(t3.status, Status::AwaitingSign as i32);
    assert!(t3.sign_due_ms > t3.dispatched_at_ms);
    assert!(
        t3.sign_due_ms <= t3.dispatched_at_ms + 6 * 86_400_000,
        "sign within a working day"
    );
    let t3 = run(
        &c,
        &t3.id,
        unit(LUDENG),
        "",
        Op::Sign(Sign {
            unit: LUDENG.into(),
        }),
    )
    .await;
    assert!(t3.signed_in_time);
    assert!(
        t3.handle_due_ms > t3.signed_at_ms + 7 * 86_400_000,
        "complaint: 10 working days"
    );
    let due = t3.handle_due_ms;
    let t3 = run(
        &c,
        &t3.id,
        unit(LUDENG),
        "需更换电缆",
        Op::Extend(Extend {
            unit: LUDENG.into(),
            days: 5,
        }),
    )
    .await;
    let t3 = run(
        &c,
        &t3.id,
        Some(Actor {
            id: "督办员1".into(),
            role: Role::Supervisor as i32,
        }),
        "",
        Op::DecideExtension(DecideExtension { approve: true }),
    )
    .await;
    assert!(
        t3.handle_due_ms >= due + 5 * 86_400_000,
        "5 working days later"
    );

    // The return path, with the leader killed between return and review.
    let t4 = c
        .accept(accept_req(
            Kind::Report,
            "城乡建设",
            "小区门口占道经营",
            "13800004444",
        ))
        .await
        .unwrap();
    let t4 = run(
        &c,
        &t4.id,
        center(),
        "",
        Op::Dispatch(Dispatch {
            lead_unit: LUDENG.into(),
            ..Default::default()
        }),
    )
    .await;
    let t4 = run(
        &c,
        &t4.id,
        unit(LUDENG),
        "不属于路灯所职责",
        Op::Return(Return {
            unit: LUDENG.into(),
        }),
    )
    .await;
    assert_eq!(t4.status, Status::ReturnReview as i32);

    let leader = wait_leader(&c, Duration::from_secs(5)).await.unwrap();
    assert_eq!(leader, leader_now, "no election expected yet");
    assert_ne!(leader, survivor_id);
    cl.kill(leader);
    let killed = Instant::now();

    let t4 = run(
        &c,
        &t4.id,
        center(),
        "改派城管",
        Op::ReviewReturn(ReviewReturn {
            reject: false,
            lead_unit: CHENGGUAN.into(),
            assisting_units: vec![],
        }),
    )
    .await;
    let new_leader = wait_leader(&c, Duration::from_secs(10)).await.unwrap();
    assert_ne!(new_leader, leader);
    eprintln!(
        "first command after the kill committed {:?} later",
        killed.elapsed()
    );
    assert_eq!((t4.lead_unit.as_str(), t4.returns), (CHENGGUAN, 1));
    let t4 = run(
        &c,
        &t4.id,
        unit(CHENGGUAN),
        "",
        Op::Sign(Sign {
            unit: CHENGGUAN.into(),
        }),
    )
    .await;
    run(
        &c,
        &t4.id,
        Some(Actor {
            id: "督办员1".into(),
            role: Role::Supervisor as i32,
        }),
        "",
        Op::Urge(Urge {}),
    )
    .await;
    run(
        &c,
        &t4.id,
        Some(Actor {
            id: "督办员1".into(),
            role: Role::Supervisor as i32,
        }),
        "群众多次反映",
        Op::Supervise(Supervise {}),
    )
    .await;
    let t4 = run(
        &c,
        &t4.id,
        unit(CHENGGUAN),
        "",
        Op::Reply(Reply {
            unit: CHENGGUAN.into(),
            text: "已劝离摊贩".into(),
        }),
    )
    .await;
    let t4 = run(
        &c,
        &t4.id,
        center(),
        "摊贩次日又来",
        Op::Callback(Callback {
            contacted: true,
            resolution: Resolution::Unresolved as i32,
            satisfaction: Satisfaction::Unsatisfied as i32,
        }),
    )
    .await;
    assert_eq!(t4.status, Status::AwaitingCallback as i32);
    let t4 = run(
        &c,
        &t4.id,
        center(),
        "问题未实际解决，属承办单位责任",
        Op::Reopen(Reopen {}),
    )
    .await;
    assert_eq!((t4.status, t4.reopens), (Status::AwaitingSign as i32, 1));
    let t4 = run(
        &c,
        &t4.id,
        unit(CHENGGUAN),
        "",
        Op::Sign(Sign {
            unit: CHENGGUAN.into(),
        }),
    )
    .await;
    let t4 = run(
        &c,
        &t4.id,
        unit(CHENGGUAN),
        "",
        Op::Reply(Reply {
            unit: CHENGGUAN.into(),
            text: "已设置隔离栏并每日巡查".into(),
        }),
    )
    .await;
    let t4 = run(
        &c,
        &t4.id,
        center(),
        "",
        Op::Callback(Callback {
            contacted: true,
            resolution: Resolution::Resolved as i32,
            satisfaction: Satisfaction::Basic as i32,
        }),
    )
    .await;
    assert_eq!(
        (t4.status, t4.closure),
        (Status::Closed as i32, Closure::Resolved as i32)
    );

    // Finish t3 on the new leader.
    let t3 = run(
        &c,
        &t3.id,
        unit(LUDENG),
        "",
        Op::Reply(Reply {
            unit: LUDENG.into(),
            text: "已更换电缆，路灯恢复".into(),
        }),
    )
    .await;
    assert!(t3.replied_in_time);
    let t3 = run(
        &c,
        &t3.id,
        center(),
        "",
        Op::Callback(Callback {
            contacted: true,
            resolution: Resolution::Resolved as i32,
            satisfaction: Satisfaction::Satisfied as i32,
        }),
    )
    .await;
    assert_eq!(t3.status, Status::Closed as i32);
    let t3 = run(&c, &t3.id, center(), "", Op::Archive(Archive {})).await;
    assert_eq!(t3.status, Status::Archived as i32);

    // The watcher saw every event of t3, in order, as they were applied.
    let mut seen = Vec::new();
    while seen.len() < t3.events.len() {
        let e = tokio::time::timeout(Duration::from_secs(10), watch.message())
            .await
            .expect("watch event in time")
            .unwrap()
            .expect("stream open");
        seen.push(e);
    }
    assert_eq!(seen, t3.events, "watch stream = the ticket's chain");

    // 并单: two callers about one place.
    let mut r5 = accept_req(
        Kind::Complaint,
        "环境保护",
        "工地夜间施工噪声",
        "13800005555",
    );
    r5.priority = Priority::Urgent as i32;
    let t5 = c.accept(r5).await.unwrap();
    let t6 = c
        .accept(accept_req(
            Kind::Complaint,
            "环境保护",
            "工地半夜还在打桩",
            "13900006666",
        ))
        .await
        .unwrap();
    let t5 = run(
        &c,
        &t5.id,
        center(),
        "同一工地",
        Op::Merge(Merge {
            duplicate_id: t6.id.clone(),
        }),
    )
    .await;
    assert_eq!(t5.requesters.len(), 2);
    assert!(
        t5.requesters.iter().all(|r| r.phone.is_empty()),
        "full phones never leave the node"
    );
    assert_eq!(t5.requesters[1].phone_masked, "139****6666");
    let t6 = c.get(&t6.id).await.unwrap();
    assert_eq!(
        (t6.status, t6.master_id.as_str()),
        (Status::Merged as i32, t5.id.as_str())
    );
    // The second caller follows the master's progress with their own number.
    let t5 = run(
        &c,
        &t5.id,
        center(),
        "",
        Op::Dispatch(Dispatch {
            lead_unit: CHENGGUAN.into(),
            ..Default::default()
        }),
    )
    .await;
    let l = c.lookup(&t6.id, "6666").await.unwrap();
    assert_eq!(l.status, Status::AwaitingSign as i32);
    assert!(
        l.progress.iter().any(|p| p.summary.contains(CHENGGUAN)),
        "{:?}",
        l.progress
    );
    assert_eq!(
        c.lookup(&t6.id, "5555").await.unwrap_err().code(),
        Code::NotFound
    );

    // Every chain verifies, on every surviving replica too.
    for id in [&t1.id, &t2.id, &t3.id, &t4.id, &t5.id, &t6.id] {
        let v = c.verify(id).await.unwrap();
        assert!(v.ok, "{id}: {}", v.detail);
    }
    let kinds: Vec<&str> = t4.events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "accept",
            "dispatch",
            "return",
            "review_return",
            "sign",
            "urge",
            "supervise",
            "reply",
            "callback",
            "reopen",
            "sign",
            "reply",
            "callback"
        ]
    );

    // Lists: a unit's worklist, filters.
    let wl = c
        .list(ListTicketsRequest {
            unit: CHENGGUAN.into(),
            statuses: vec![Status::AwaitingSign as i32, Status::Handling as i32],
            by_deadline: true,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        wl.tickets.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
        [t5.id.as_str()]
    );
    let closed = c
        .list(ListTicketsRequest {
            statuses: vec![Status::Closed as i32],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(closed.tickets.len(), 3, "answered, referred, t4");

    // KPIs over everything accepted so far.
    let rep = c.report(ReportRequest::default()).await.unwrap();
    assert_eq!(rep.total, 6);
    let k = rep.region.unwrap();
    assert_eq!(
        (
            k.direct_answer.unwrap().numerator,
            k.direct_answer.unwrap().denominator
        ),
        (1, 5),
        "merged excluded"
    );
    let sat = k.satisfaction.unwrap();
    assert_eq!(sat.permille, 800, "satisfied + 0.6 × basic over 2 rated");
    assert_eq!(k.reopens.unwrap().numerator, 1);
    assert_eq!(k.returns.unwrap().numerator, 1);
    assert!(rep.units.iter().any(|u| u.scope.contains(CHENGGUAN)));

    // Notifications: accept ×6 (+1 for t5's second requester on dispatch),
    // dispatch, reply, callback — each delivered at least once, by id, and
    // the outbox drains, across the leader change.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let pending = c.outbox(100).await.unwrap();
        if pending.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            for n in 1..=3 {
                eprintln!("---- node {n}\n{}", cl.log(n));
            }
            panic!("outbox not drained: {pending:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let ids = hook.ids();
    for t in [&t1, &t2, &t3, &t4, &t5, &t6] {
        assert!(
            ids.contains(&format!("{}#1#0", t.id)),
            "accept notice of {}: {ids:?}",
            t.id
        );
    }
    let t5_dispatch = t5.events.iter().find(|e| e.kind == "dispatch").unwrap().seq;
    assert!(
        ids.contains(&format!("{}#{t5_dispatch}#1", t5.id)),
        "merged requester notified"
    );
    let bodies = hook.received.lock().unwrap().clone();
    assert!(
        bodies.iter().any(|(_, b)| b.contains("已设置隔离栏")),
        "reply text reaches the requester"
    );
    assert!(bodies.iter().all(|(_, b)| b.contains("12345")));
    drop(cl);
}
