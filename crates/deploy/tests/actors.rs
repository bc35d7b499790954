//! Actor hosting with real components: memory kept between messages,
//! restarts after a trap with state intact, the restart intensity failing
//! a deployment while its neighbours serve, the three supervision
//! strategies, and backpressure from a full mailbox.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use std::time::{Duration, Instant};

use airssys_wasm_deploy::{
    ActorSpec, ActorStatus, DeploySpec, Deployer, Error, GroupSpec, Hosting, Provenance, StateDir,
    Strategy, Supervision,
};
use airssys_wasm_runtime::{Message, RuntimeConfig};
use airssys_wasm_test_guests::{ACTOR, FLAKY};

fn open() -> (tempfile::TempDir, Deployer) {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let d = Deployer::open(&dir, RuntimeConfig::default().max_instances(64)).unwrap();
    (root, d)
}

/// Deploy the actor guest as `name` with `actor` settings.
async fn deploy(d: &mut Deployer, name: &str, actor: ActorSpec) {
    let bytes = std::fs::read(ACTOR).unwrap();
    d.registry()
        .publish(name, "0.1.0", &bytes, &Provenance::unsigned(), "t")
        .unwrap();
    let mut spec = DeploySpec::new(name, "0.1.0");
    spec.allow = vec!["system-call:state".into(), "system-call:config".into()];
    spec.hosting = Hosting::Actor;
    spec.actor = Some(actor);
    d.deploy(spec, false, "t").await.unwrap();
    d.serve(name).await.unwrap();
}

/// What `name` answers to `command`.
async fn ask(d: &mut Deployer, name: &str, command: &str) -> Result<String, Error> {
    let served = d.route(name).execute(Message::new(command)).await?;
    Ok(String::from_utf8(served.output.value.payload).unwrap())
}

fn status(d: &mut Deployer, name: &str) -> ActorStatus {
    d.route(name).current().unwrap().actors.unwrap().status()
}

/// Wait until `name`'s actors satisfy `done` (at most 10 s).
async fn wait_for(d: &mut Deployer, name: &str, done: impl Fn(&ActorStatus) -> bool) {
    let start = Instant::now();
    loop {
        let s = status(d, name);
        if done(&s) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{name}: {s:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn quick(supervision: Supervision, instances: u32) -> ActorSpec {
    ActorSpec {
        instances: Some(instances),
        supervision: Some(supervision),
        backoff_ms: Some(1),
        ..ActorSpec::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_actor_keeps_memory_between_messages_and_its_state_across_a_trap() {
    let (_root, mut d) = open();
    deploy(&mut d, "a", quick(Supervision::OneForOne, 1)).await;
    for n in 1..=3 {
        assert_eq!(
            ask(&mut d, "a", "count").await.unwrap(),
            format!("memory {n} state {n}")
        );
    }
    let inits: u32 = ask(&mut d, "a", "get inits")
        .await
        .unwrap()
        .parse()
        .unwrap();
    // Its own error leaves the instance as it is.
    assert!(ask(&mut d, "a", "error").await.is_err());
    assert_eq!(status(&mut d, "a").restarts, 0);

    // A trap after a write: the write is undone, the instance restarted.
    let trapped = ask(&mut d, "a", "count-then-panic").await.unwrap_err();
    assert!(trapped.to_string().contains("asked to panic"), "{trapped}");
    wait_for(&mut d, "a", |s| s.restarts == 1 && s.running == 1).await;
    assert_eq!(ask(&mut d, "a", "count").await.unwrap(), "memory 1 state 4");
    let after: u32 = ask(&mut d, "a", "get inits")
        .await
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(after, inits + 1, "the new instance ran init");
    let s = status(&mut d, "a");
    assert_eq!((s.instances, s.running, s.restarts), (1, 1, 1));
    assert_eq!(s.processed, 8);
    assert_eq!(s.failed, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_past_the_intensity_fail_the_deployment_while_others_serve() {
    let (_root, mut d) = open();
    let mut spec = quick(Supervision::OneForOne, 1);
    spec.max_restarts = Some(2);
    spec.restart_window_ms = Some(60_000);
    deploy(&mut d, "looper", spec).await;
    deploy(&mut d, "steady", quick(Supervision::OneForOne, 1)).await;
    let signal = d.decision_signal();
    for _ in 0..3 {
        assert!(ask(&mut d, "looper", "panic").await.is_err());
    }
    tokio::time::timeout(Duration::from_secs(10), signal.wait())
        .await
        .expect("the supervisor reports the failure");
    let changed = d.settle().unwrap();
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert_eq!(changed[0].state, "failed");
    let reason = changed[0].reason.clone().unwrap();
    assert!(
        reason.starts_with("supervisor: more than 2 restarts within 1m"),
        "{reason}"
    );
    // Calls get the reason; the neighbour serves.
    let e = ask(&mut d, "looper", "count").await.unwrap_err();
    assert!(matches!(e, Error::ActorsFailed { .. }), "{e}");
    assert!(e.to_string().contains("more than 2 restarts"), "{e}");
    assert_eq!(
        ask(&mut d, "steady", "count").await.unwrap(),
        "memory 1 state 1"
    );
    // Shown as failed, audited.
    assert!(d.status().unwrap().iter().all(|r| r.name != "looper"));
    let failed = d.failed_actors().unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].name, "looper");
    let s = status(&mut d, "looper");
    assert_eq!(s.running, 0);
    assert!(s.failed.unwrap().contains("more than 2 restarts"));
    let audit = d.registry().audit().unwrap();
    let last = audit.last().unwrap();
    assert_eq!(
        (last.actor.as_str(), last.action.as_str()),
        ("supervisor", "fail")
    );
    assert_eq!(last.subject, "looper@0.1.0");
    d.registry().verify_audit().unwrap();

    // A fix follows the failed deployment, on its state.
    let mut spec = DeploySpec::new("looper", "0.1.0");
    spec.allow = vec!["system-call:state".into(), "system-call:config".into()];
    spec.hosting = Hosting::Actor;
    let fixed = d.deploy(spec, false, "t").await.unwrap();
    assert_eq!(fixed.parent, Some(changed[0].id));
    assert_eq!(fixed.generation, changed[0].generation);
    assert_eq!(
        ask(&mut d, "looper", "count").await.unwrap(),
        "memory 1 state 1"
    );
    assert!(d.failed_actors().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_strategy_restarts_its_own_set_of_instances() {
    // Messages sent one after another go round the three instances (the
    // mailboxes are equally empty): counts 0..7 reach instances 0, 1, 2,
    // 0, 1, 2, 0 (memory 3, 2, 2), the panic reaches instance 1, and the
    // next three counts reach instances 2, 0, 1.
    for (supervision, restarted, expected) in [
        (
            Supervision::OneForOne,
            1,
            ["memory 3", "memory 4", "memory 1"],
        ),
        (
            Supervision::RestForOne,
            2,
            ["memory 1", "memory 4", "memory 1"],
        ),
        (
            Supervision::OneForAll,
            3,
            ["memory 1", "memory 1", "memory 1"],
        ),
    ] {
        let (_root, mut d) = open();
        deploy(&mut d, "g", quick(supervision, 3)).await;
        for _ in 0..7 {
            ask(&mut d, "g", "count").await.unwrap();
        }
        assert!(ask(&mut d, "g", "panic").await.is_err());
        wait_for(&mut d, "g", |s| s.restarts == restarted && s.running == 3).await;
        for want in expected {
            let got = ask(&mut d, "g", "count").await.unwrap();
            assert!(
                got.starts_with(&format!("{want} ")),
                "{supervision:?}: {got}, want {want}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_mailbox_makes_the_sender_wait_then_fail() {
    let (_root, mut d) = open();
    let spec = ActorSpec {
        mailbox: Some(1),
        send_timeout_ms: Some(300),
        ..ActorSpec::default()
    };
    deploy(&mut d, "slow", spec).await;
    let route = d.route("slow");
    // One message in hand, one waiting: the mailbox is full.
    route.send(Message::new("sleep 1500"), None).await.unwrap();
    wait_for(&mut d, "slow", |s| s.mailbox_depth == 0).await;
    route.send(Message::new("sleep 10"), None).await.unwrap();
    assert_eq!(status(&mut d, "slow").mailbox_depth, 1);
    let start = Instant::now();
    let e = route.execute(Message::new("count")).await.unwrap_err();
    let waited = start.elapsed();
    assert!(matches!(e, Error::MailboxFull { capacity: 1, .. }), "{e}");
    assert!(e.to_string().contains("every mailbox is full"), "{e}");
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_millis(1400), "{waited:?}");
    // A shorter wait of the sender's own is kept.
    let start = Instant::now();
    let e = route
        .execute_within(Message::new("count"), Some(Duration::from_millis(50)))
        .await
        .unwrap_err();
    assert!(matches!(e, Error::MailboxFull { .. }), "{e}");
    assert!(start.elapsed() < Duration::from_millis(300));
    // Room again once the instance caught up: nothing accepted was lost.
    wait_for(&mut d, "slow", |s| s.processed == 2).await;
    assert_eq!(
        ask(&mut d, "slow", "count").await.unwrap(),
        "memory 1 state 1"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_restart_counts_once_against_the_intensity() {
    let (_root, mut d) = open();
    // Four instances restarted together, under the default intensity of
    // three restarts: one restart, not four.
    deploy(&mut d, "four", quick(Supervision::OneForAll, 4)).await;
    assert!(ask(&mut d, "four", "panic").await.is_err());
    wait_for(&mut d, "four", |s| s.restarts == 4 && s.running == 4).await;
    assert_eq!(status(&mut d, "four").failed, None);
    assert!(ask(&mut d, "four", "count").await.is_ok());
}

/// Flaky (no state; answers `ok` after config `delay-ms`) at `version`,
/// hosted as an actor with `instances`.
fn flaky(version: &str, instances: u32) -> DeploySpec {
    let mut spec = DeploySpec::new("svc", version);
    spec.allow = vec!["system-call:config".into()];
    spec.config = vec![("delay-ms".into(), "10".into())];
    spec.hosting = Hosting::Actor;
    spec.actor = Some(ActorSpec {
        instances: Some(instances),
        ..ActorSpec::default()
    });
    spec
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_upgrade_hands_every_waiting_message_over() {
    let (_root, mut d) = open();
    let bytes = std::fs::read(FLAKY).unwrap();
    for v in ["0.1.0", "0.2.0", "0.3.0"] {
        d.registry()
            .publish("svc", v, &bytes, &Provenance::unsigned(), "t")
            .unwrap();
    }
    d.deploy(flaky("0.1.0", 4), false, "t").await.unwrap();
    let route = d.serve("svc").await.unwrap();
    let old = route.current().unwrap().actors.unwrap();
    // 200 messages of 10 ms each on four instances: half a second of work
    // waiting in the mailboxes when the upgrade starts.
    let calls: Vec<_> = (0..200)
        .map(|_| {
            let route = route.clone();
            tokio::spawn(async move { route.execute(Message::new("go")).await })
        })
        .collect();
    wait_for(&mut d, "svc", |s| s.mailbox_depth > 20).await;
    let upgraded = d
        .upgrade(
            "svc",
            "0.2.0",
            Strategy::Rolling { batch: 2 },
            Some(flaky("0.2.0", 4)),
            false,
            "t",
        )
        .await
        .unwrap();
    assert_eq!(
        (upgraded.strategy.as_str(), upgraded.state.as_str()),
        ("rolling", "active")
    );
    for call in calls {
        let served = call.await.unwrap().expect("no accepted message is lost");
        assert_eq!(served.output.value.payload, b"ok");
    }
    let new = route.current().unwrap().actors.unwrap();
    let (o, n) = (old.status(), new.status());
    assert!(
        n.processed > 0,
        "the new instances took over waiting messages"
    );
    assert_eq!(o.processed + n.processed, 200, "{o:?} {n:?}");
    assert_eq!((o.running, n.running), (0, 4));

    // A rolling upgrade keeps the instance count (and mailbox size).
    let e = d
        .upgrade(
            "svc",
            "0.3.0",
            Strategy::Rolling { batch: 1 },
            Some(flaky("0.3.0", 2)),
            false,
            "t",
        )
        .await
        .unwrap_err();
    assert!(e.to_string().contains("keeps its 4 instance(s)"), "{e}");
    assert_eq!(route.current().unwrap().deployment.version, "0.2.0");
}

fn group(name: &str, strategy: Supervision, children: &[&str], max_restarts: u32) -> GroupSpec {
    GroupSpec {
        name: name.into(),
        strategy,
        children: children.iter().map(|c| (*c).to_string()).collect(),
        max_restarts,
        restart_window: Duration::from_secs(60),
    }
}

/// The in-memory count of each of `names`' (one-instance) actors, counted
/// once more.
async fn memories(d: &mut Deployer, names: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    for n in names {
        let said = ask(d, n, "count").await.unwrap();
        out.push(said.split(' ').nth(1).unwrap().to_string());
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervision_groups_restart_siblings_and_nest() {
    let (_root, mut d) = open();
    // pipeline (rest-for-one): a, b, c; top (one-for-all): pipeline, x.
    // pipeline gives up at its second restart.
    d.supervise(vec![
        group("pipeline", Supervision::RestForOne, &["a", "b", "c"], 1),
        group("top", Supervision::OneForAll, &["pipeline", "x"], 5),
    ])
    .unwrap();
    for name in ["a", "b", "c", "x"] {
        deploy(&mut d, name, quick(Supervision::OneForOne, 1)).await;
    }
    let all = ["a", "b", "c", "x"];
    assert_eq!(memories(&mut d, &all).await, ["1", "1", "1", "1"]);

    // b breaks: b restarts (its own supervisor), then c (rest-for-one);
    // a and x keep their memory.
    assert!(ask(&mut d, "b", "panic").await.is_err());
    wait_for(&mut d, "c", |s| s.restarts == 1 && s.running == 1).await;
    wait_for(&mut d, "b", |s| s.restarts == 1 && s.running == 1).await;
    assert_eq!(memories(&mut d, &all).await, ["2", "1", "1", "2"]);

    // a breaks: pipeline passes its intensity and gives up; top restarts
    // it whole, and x with it (one-for-all).
    assert!(ask(&mut d, "a", "panic").await.is_err());
    wait_for(&mut d, "x", |s| s.restarts == 1 && s.running == 1).await;
    for name in ["a", "b", "c"] {
        wait_for(&mut d, name, |s| s.running == 1).await;
    }
    assert_eq!(memories(&mut d, &all).await, ["1", "1", "1", "1"]);
    for name in all {
        assert_eq!(status(&mut d, name).failed, None, "{name}");
    }

    // A group tree is checked.
    let e = d
        .supervise(vec![
            group("p", Supervision::OneForAll, &["q"], 1),
            group("q", Supervision::OneForAll, &["p"], 1),
        ])
        .unwrap_err();
    assert!(e.to_string().contains("is under itself"), "{e}");
    let e = d
        .supervise(vec![
            group("p", Supervision::OneForAll, &["a"], 1),
            group("q", Supervision::OneForAll, &["a"], 1),
        ])
        .unwrap_err();
    assert!(e.to_string().contains("a child has one supervisor"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_root_group_that_gives_up_fails_every_deployment_under_it() {
    let (_root, mut d) = open();
    d.supervise(vec![group("all", Supervision::OneForOne, &["a", "b"], 0)])
        .unwrap();
    deploy(&mut d, "a", quick(Supervision::OneForOne, 1)).await;
    deploy(&mut d, "b", quick(Supervision::OneForOne, 1)).await;
    deploy(&mut d, "outside", quick(Supervision::OneForOne, 1)).await;
    let signal = d.decision_signal();
    assert!(ask(&mut d, "a", "panic").await.is_err());
    wait_for(&mut d, "b", |s| s.failed.is_some()).await;
    tokio::time::timeout(Duration::from_secs(10), signal.wait())
        .await
        .unwrap();
    let mut failed = Vec::new();
    for _ in 0..100 {
        failed.extend(d.settle().unwrap());
        if failed.len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut names: Vec<&str> = failed.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    for r in &failed {
        let reason = r.reason.as_deref().unwrap();
        assert!(
            reason.contains("supervisor `all`: more than 0 restarts within 1m"),
            "{reason}"
        );
    }
    assert_eq!(
        ask(&mut d, "outside", "count").await.unwrap(),
        "memory 1 state 1"
    );
}
