//! Messages between deployed components, through the host: request and
//! answer over several hops, send, and each way a message fails.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]

use airssys_wasm_deploy::{DeploySpec, Deployer, Provenance, StateDir};
use airssys_wasm_runtime::{ComponentError, Message, RuntimeConfig};
use airssys_wasm_test_guests::{ACTOR, ECHO, FLAKY, LEGACY, MISBEHAVE, RELAY};

/// A deployer over a fresh directory.
fn open() -> (tempfile::TempDir, Deployer) {
    let root = tempfile::tempdir().unwrap();
    let dir = StateDir::open(root.path().join("s")).unwrap();
    let d = Deployer::open(&dir, RuntimeConfig::default().max_instances(64)).unwrap();
    (root, d)
}

/// Publish `file` as `name` 0.1.0 and deploy it with `allow` and `config`.
async fn deploy(d: &mut Deployer, name: &str, file: &str, allow: &[&str], config: &[(&str, &str)]) {
    let bytes = std::fs::read(file).unwrap();
    d.registry()
        .publish(name, "0.1.0", &bytes, &Provenance::unsigned(), "t")
        .unwrap();
    let mut spec = DeploySpec::new(name, "0.1.0");
    spec.allow = allow.iter().map(|s| (*s).to_string()).collect();
    spec.config = config
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    d.deploy(spec, false, "t").await.unwrap();
    d.serve(name).await.unwrap();
}

/// A relay that may message anyone.
async fn relay(d: &mut Deployer, name: &str, config: &[(&str, &str)]) {
    deploy(
        d,
        name,
        RELAY,
        &[
            "system-call:state",
            "system-call:config",
            "messaging:send:*",
            "messaging:request:*",
            "messaging:publish:*",
        ],
        config,
    )
    .await;
}

/// Misbehave as `name`, granted what it requires (a send to `other`, a
/// publish to `news`; no request).
async fn misbehave(d: &mut Deployer, name: &str) {
    let allow = [
        "system-call:state",
        "system-call:config",
        "messaging:send:other",
        "messaging:publish:news",
    ];
    deploy(d, name, MISBEHAVE, &allow, &[]).await;
}

/// What `name` answers to `command`: its text, or its error.
async fn ask(d: &mut Deployer, name: &str, command: &str) -> Result<String, ComponentError> {
    match d.route(name).execute(Message::new(command)).await {
        Ok(served) => Ok(String::from_utf8(served.output.value.payload).unwrap()),
        Err(airssys_wasm_deploy::Error::Component(airssys_wasm_runtime::Error::Guest {
            error,
            ..
        })) => Err(error),
        Err(e) => panic!("{command}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_through_the_host_over_hops_and_fail_each_in_its_own_way() {
    let (_root, mut d) = open();
    deploy(&mut d, "echo", ECHO, &[], &[]).await;
    relay(&mut d, "a", &[("relay-timeout-ms", "300")]).await;
    relay(&mut d, "b", &[]).await;
    misbehave(&mut d, "bad").await;

    // Request and answer, then over two hops; the target sees the chain.
    assert_eq!(
        ask(&mut d, "a", "relay echo hi").await.unwrap(),
        "echo said: hi"
    );
    assert_eq!(
        ask(&mut d, "a", "relay b relay echo deep").await.unwrap(),
        "b said: echo said: deep"
    );
    // No such component.
    let Err(ComponentError::NotFound(why)) = ask(&mut d, "a", "relay nobody x").await else {
        panic!("a missing target is not `not-found`");
    };
    assert!(why.contains("no component named `nobody`"), "{why}");
    // A target that traps: `failed`, with which.
    let Err(ComponentError::Failed(why)) = ask(&mut d, "a", "relay bad panic").await else {
        panic!("a trapping target is not `failed`");
    };
    assert!(why.starts_with("`bad` failed"), "{why}");
    // Its own error, as it gave it.
    let Err(ComponentError::InvalidInput(why)) = ask(&mut d, "a", "relay bad nonsense").await
    else {
        panic!("the target's own error did not come back");
    };
    assert!(why.contains("unknown command"), "{why}");
    // Too slow: `timeout` after the sender's wait (300 ms here).
    deploy(
        &mut d,
        "slow",
        FLAKY,
        &["system-call:config"],
        &[("delay-ms", "3000")],
    )
    .await;
    let started = std::time::Instant::now();
    let Err(ComponentError::Timeout(why)) = ask(&mut d, "a", "relay slow x").await else {
        panic!("a slow target is not `timeout`");
    };
    assert!(why.contains("`slow` did not answer within 300ms"), "{why}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    // Back to a component that keeps state and waits in the chain: a
    // cycle, refused at once instead of waiting for itself, as the typed
    // `cycle` (which each relay hands back as its own).
    let Err(ComponentError::Cycle(why)) = ask(&mut d, "a", "relay b relay a echo").await else {
        panic!("a cycle is not refused");
    };
    assert!(
        why.contains("a -> b -> a, which handles one message at a time"),
        "{why}"
    );
    // Each delivery counted, by sender, target, delivery and outcome.
    let counts = d.message_counts().snapshot();
    let count = |from: &str, to: &str, outcome: &str| {
        counts
            .iter()
            .find(|((f, t, delivery, o), _)| {
                f == from && t == to && *delivery == "request" && *o == outcome
            })
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("a", "echo", "ok"), 1, "{counts:?}");
    assert_eq!(count("a", "nobody", "not-found"), 1, "{counts:?}");
    assert_eq!(count("a", "slow", "timeout"), 1, "{counts:?}");
    assert_eq!(count("b", "a", "cycle"), 1, "{counts:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_stops_at_the_hop_limit_and_grants_are_checked_first() {
    let (_root, mut d) = open();
    for i in 1..=8 {
        relay(&mut d, &format!("m{i}"), &[]).await;
    }
    deploy(&mut d, "echo", ECHO, &[], &[]).await;
    // Seven hops reach echo; the eighth is refused.
    let seven: String = (2..=8).map(|i| format!("relay m{i} ")).collect();
    let answer = ask(&mut d, "m1", &format!("{seven}relay echo x")).await;
    let Err(ComponentError::Cycle(why)) = answer else {
        panic!("8 components and echo passed: {answer:?}");
    };
    assert!(
        why.contains("hop limit: a message passes 8 components at most (m1 -> m2 -> m3 -> m4 -> m5 -> m6 -> m7 -> m8 -> echo)"),
        "{why}"
    );
    let six: String = (2..=7).map(|i| format!("relay m{i} ")).collect();
    assert!(
        ask(&mut d, "m1", &format!("{six}relay echo ok"))
            .await
            .unwrap()
            .ends_with("echo said: ok")
    );

    // Without a grant: denied, before anything is looked up (misbehave's
    // `message` requests `other`, which it is not granted).
    misbehave(&mut d, "closed").await;
    let said = ask(&mut d, "closed", "message").await.unwrap();
    assert_eq!(
        said.lines().nth(1),
        Some("err: denied: capability `messaging:request:other` is not granted"),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_handled_after_the_sender_goes_on() {
    let (_root, mut d) = open();
    relay(&mut d, "a", &[]).await;
    relay(&mut d, "counter", &[]).await;
    assert_eq!(ask(&mut d, "a", "tell counter one").await.unwrap(), "sent");
    assert_eq!(ask(&mut d, "a", "tell counter two").await.unwrap(), "sent");
    // Both sends are handled after the sender went on: the counter counts
    // them, then this call.
    let mut count = 0;
    for _ in 0..100 {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        count = ask(&mut d, "counter", "count")
            .await
            .unwrap()
            .parse::<u32>()
            .unwrap();
        if count >= 3 {
            break;
        }
    }
    assert!(count >= 3, "{count}");
    // A send to nobody is refused at once.
    let Err(ComponentError::NotFound(_)) = ask(&mut d, "a", "tell nobody x").await else {
        panic!("a send to nobody was accepted");
    };
    // A publish nobody subscribed to is no error.
    misbehave(&mut d, "pub").await;
    let said = ask(&mut d, "pub", "message").await.unwrap();
    assert_eq!(said.lines().nth(2), Some("ok: "), "{said}");
}

/// Deploy the actor guest as `name`, subscribed to `topics` (granted), as
/// an actor or per call.
async fn subscriber(d: &mut Deployer, name: &str, topics: &[&str], actor: bool) {
    let bytes = std::fs::read(ACTOR).unwrap();
    d.registry()
        .publish(name, "0.1.0", &bytes, &Provenance::unsigned(), "t")
        .unwrap();
    let mut spec = DeploySpec::new(name, "0.1.0");
    spec.allow = vec!["system-call:state".into(), "system-call:config".into()];
    spec.allow.push("messaging:subscribe:ticks*".into());
    spec.subscribe = topics.iter().map(|t| (*t).to_string()).collect();
    if actor {
        spec.hosting = airssys_wasm_deploy::Hosting::Actor;
        spec.actor = Some(airssys_wasm_deploy::ActorSpec {
            instances: Some(2),
            ..Default::default()
        });
    }
    d.deploy(spec, false, "t").await.unwrap();
    d.serve(name).await.unwrap();
}

/// The count in `name`'s state.
async fn count_of(d: &mut Deployer, name: &str) -> String {
    ask(d, name, "get count").await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_reaches_every_subscriber_exactly_once() {
    let (_root, mut d) = open();
    relay(&mut d, "publisher", &[]).await;
    // Two actors with two instances each, one per-call subscriber, and two
    // that do not subscribe to `ticks`.
    subscriber(&mut d, "s1", &["ticks"], true).await;
    subscriber(&mut d, "s2", &["ticks*"], true).await;
    subscriber(&mut d, "s3", &["ticks"], false).await;
    subscriber(&mut d, "other", &["ticks.other"], true).await;
    subscriber(&mut d, "none", &[], true).await;
    for _ in 0..3 {
        assert_eq!(
            ask(&mut d, "publisher", "publish ticks count")
                .await
                .unwrap(),
            "published"
        );
    }
    // Each subscriber counted each publish once: wait for the three, then
    // a while longer for a duplicate that would come late.
    let start = std::time::Instant::now();
    while count_of(&mut d, "s1").await != "3"
        || count_of(&mut d, "s2").await != "3"
        || count_of(&mut d, "s3").await != "3"
    {
        assert!(start.elapsed() < std::time::Duration::from_secs(10));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert_eq!(count_of(&mut d, "s1").await, "3");
    assert_eq!(count_of(&mut d, "s2").await, "3");
    assert_eq!(count_of(&mut d, "s3").await, "3");
    assert_eq!(count_of(&mut d, "other").await, "");
    assert_eq!(count_of(&mut d, "none").await, "");
    let published: u64 = d
        .message_counts()
        .snapshot()
        .iter()
        .filter(|((from, _, delivery, outcome), _)| {
            from == "publisher" && *delivery == "publish" && *outcome == "ok"
        })
        .map(|(_, n)| n)
        .sum();
    assert_eq!(published, 9, "three subscribers, three publishes");

    // A subscription needs its grant.
    let mut spec = DeploySpec::new("s1", "0.1.0");
    spec.allow = vec!["system-call:state".into(), "system-call:config".into()];
    spec.subscribe = vec!["orders".into()];
    let e = d.deploy(spec, false, "t").await.unwrap_err().to_string();
    assert!(
        e.contains(
            "subscription `orders` is not granted; add `--allow messaging:subscribe:orders`"
        ),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_messaging_denial_is_typed_and_audited() {
    let (_root, mut d) = open();
    relay(&mut d, "vault", &[]).await;
    // Granted everything, with one denial of each kind.
    let bytes = std::fs::read(RELAY).unwrap();
    d.registry()
        .publish("a", "0.1.0", &bytes, &Provenance::unsigned(), "t")
        .unwrap();
    let mut spec = DeploySpec::new("a", "0.1.0");
    for c in ["system-call:state", "system-call:config"] {
        spec.allow.push(c.into());
    }
    for op in ["send", "request", "publish"] {
        spec.allow.push(format!("messaging:{op}:*"));
    }
    spec.deny = vec![
        "messaging:send:vault".into(),
        "messaging:request:vault".into(),
        "messaging:publish:secrets*".into(),
    ];
    d.deploy(spec, false, "t").await.unwrap();
    d.serve("a").await.unwrap();
    for (command, capability) in [
        ("tell vault x", "messaging:send:vault"),
        ("relay vault x", "messaging:request:vault"),
        ("publish secrets.keys x", "messaging:publish:secrets.keys"),
    ] {
        let Err(ComponentError::Denied(denied)) = ask(&mut d, "a", command).await else {
            panic!("{command}: not denied");
        };
        assert_eq!(
            airssys_wasm_runtime::capability_from_wit(&denied).to_string(),
            capability
        );
    }
    // What is not denied still goes through, and the vault got nothing.
    let Err(ComponentError::NotFound(_)) = ask(&mut d, "a", "relay echo-less x").await else {
        panic!("a request to another target was not looked up");
    };
    assert_eq!(ask(&mut d, "vault", "count").await.unwrap(), "1");
    // Each denial is in the audit trail, by the host, naming what was
    // asked.
    d.record_events().unwrap();
    let trail = d.registry().audit().unwrap();
    for capability in [
        "messaging:send:vault",
        "messaging:request:vault",
        "messaging:publish:secrets.keys",
    ] {
        let found = trail.iter().any(|r| {
            r.actor == "host"
                && r.action == "denied"
                && r.subject == "a@0.1.0"
                && r.details
                    .contains(&format!("\"capability\":\"{capability}\""))
        });
        assert!(found, "no denial of {capability} in {trail:#?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_0_1_0_component_gets_the_new_errors_as_cases_it_knows() {
    let (_root, mut d) = open();
    relay(&mut d, "a", &[]).await;
    deploy(&mut d, "old", LEGACY, &["messaging:request:*"], &[]).await;
    // a asks old, which asks a back: a cycle, which a 0.1.0 component
    // knows as `unavailable`, its text kept.
    assert_eq!(
        ask(&mut d, "a", "relay old ask a count").await.unwrap(),
        "old said: error: unavailable: cycle: a -> old -> a, which handles one message at a time and waits in this chain"
    );
    // And what goes well goes as before.
    assert_eq!(ask(&mut d, "old", "ask a count").await.unwrap(), "1");
}
