use airssys_wasm_sdk::{ComponentError, Message, component};

#[component(name = "echo", version = "0.1.0", description = "Echoes")]
fn execute(input: Message) -> Result<Message, ComponentError> {
    Ok(input)
}

fn main() {}
