//! The exports `#[component]` writes, called directly on the host.

use airssys_wasm_sdk::__private::{HandlerGuest, LifecycleGuest};
use airssys_wasm_sdk::{
    Capability, ComponentError, ComponentMetadata, CustomCapability, Handler, HealthStatus,
    Message, component,
};

#[component(
    name = "probe",
    version = "0.2.0-rc.1",
    description = "Answers \"ok\"",
    capabilities = [
        "file-read:/data",
        "network-outbound:api.example.com:443",
        "network-inbound:8080",
        "system-call:env:HOME",
        r#"custom:acme:ledger:{"accounts":["main"]}"#,
    ],
)]
struct Probe;

impl Handler for Probe {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        match input.payload_str()? {
            "fail" => Err(ComponentError::NotFound("nothing here".into())),
            _ => Ok(Message::text("ok")),
        }
    }
}

#[test]
fn metadata_comes_from_the_attribute() {
    assert_eq!(
        <Probe as LifecycleGuest>::metadata(),
        ComponentMetadata {
            name: "probe".into(),
            version: "0.2.0-rc.1".into(),
            description: "Answers \"ok\"".into(),
            required_capabilities: vec![
                Capability::FileRead("/data".into()),
                Capability::NetworkOutbound("api.example.com:443".into()),
                Capability::NetworkInbound(8080),
                Capability::SystemCall("env:HOME".into()),
                Capability::Custom(CustomCapability {
                    name: "acme:ledger".into(),
                    json: r#"{"accounts":["main"]}"#.into(),
                }),
            ],
        }
    );
}

#[test]
fn lifecycle_defaults() {
    assert_eq!(
        <Probe as LifecycleGuest>::init(vec![("k".into(), "v".into())]),
        Ok(())
    );
    assert_eq!(<Probe as LifecycleGuest>::health(), HealthStatus::Healthy);
    assert_eq!(<Probe as LifecycleGuest>::migrate("0.1.0".into()), Ok(()));
    <Probe as LifecycleGuest>::shutdown();
}

#[test]
fn execute_calls_the_handler() {
    let answer = <Probe as HandlerGuest>::execute(Message::text("hi")).unwrap();
    assert_eq!(answer.payload_str(), Ok("ok"));
    assert_eq!(
        <Probe as HandlerGuest>::execute(Message::text("fail")),
        Err(ComponentError::NotFound("nothing here".into()))
    );
}

#[test]
fn capability_display_is_the_attribute_form() {
    let shown: Vec<String> = <Probe as LifecycleGuest>::metadata()
        .required_capabilities
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        shown,
        [
            "file-read:/data",
            "network-outbound:api.example.com:443",
            "network-inbound:8080",
            "system-call:env:HOME",
            r#"custom:acme:ledger:{"accounts":["main"]}"#,
        ]
    );
}
