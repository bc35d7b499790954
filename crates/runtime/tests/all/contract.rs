//! The versions of the contract: a component built against 0.1.0 runs
//! beside current ones, and the typed errors new in 0.2.0.

use airssys_wasm_runtime::{
    Capability, ComponentError, Error, Grants, HealthStatus, Limits, PrepareOptions,
};
use airssys_wasm_test_guests::{ACTOR, LEGACY};

use crate::{load, opts, text};

fn said(out: airssys_wasm_runtime::CallOutput<airssys_wasm_runtime::Message>) -> String {
    String::from_utf8(out.value.payload).unwrap()
}

#[tokio::test]
async fn a_component_built_against_0_1_0_still_runs() {
    let grants = Grants::default().allow("messaging:request:*".parse::<Capability>().unwrap());
    let legacy = load(LEGACY, PrepareOptions::default().grants(grants)).await;
    assert_eq!(
        said(legacy.execute(text("as it came")).await.unwrap()),
        "as it came"
    );
    assert!(matches!(
        legacy.health().await.unwrap(),
        HealthStatus::Healthy
    ));
    assert_eq!(legacy.metadata().await.unwrap().name, "legacy");
    // Its messaging import is linked, and answers in the cases it knows.
    assert!(
        said(legacy.execute(text("ask other x")).await.unwrap())
            .starts_with("error: unavailable: messaging needs a host with a component registry"),
    );
    // Not granted: a denial, as in 0.1.0.
    let grants = Grants::default().allow("messaging:request:vault".parse::<Capability>().unwrap());
    let narrow = load(LEGACY, PrepareOptions::default().grants(grants)).await;
    assert_eq!(
        said(narrow.execute(text("ask other x")).await.unwrap()),
        "error: denied"
    );
    // Its init's error refuses it, with its text.
    let err = crate::runtime()
        .load(
            "legacy",
            &crate::read(LEGACY),
            PrepareOptions::default()
                .grants(
                    Grants::default().allow("messaging:request:*".parse::<Capability>().unwrap()),
                )
                .config(vec![("fail-init".into(), "true".into())]),
        )
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string()
            .contains("legacy: init refused because `fail-init` is `true`"),
        "{err}"
    );
    // A long-lived instance of it, too.
    let mut instance = legacy.start_instance().await.unwrap();
    assert_eq!(said(instance.handle(text("again")).await.unwrap()), "again");
    instance.stop().await;
}

#[tokio::test]
async fn a_full_state_quota_is_the_typed_quota_exceeded() {
    // The probe's init keeps one key (`inits`); `count` asks for a second.
    let actor = load(ACTOR, opts().limits(Limits::default().state_keys(1))).await;
    let err = actor.execute(text("count")).await.unwrap_err();
    let Error::Guest {
        error: ComponentError::QuotaExceeded(why),
        ..
    } = &err
    else {
        panic!("not quota-exceeded: {err}");
    };
    assert_eq!(
        why,
        "state quota of 1 keys reached; delete keys before adding new ones"
    );
    assert!(
        err.to_string()
            .contains("quota exceeded: state quota of 1 keys"),
        "{err}"
    );
}
