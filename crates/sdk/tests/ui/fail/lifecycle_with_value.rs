use airssys_wasm_sdk::{ComponentError, Handler, Message, component};

#[component(name = "echo", version = "0.1.0", description = "Echoes", lifecycle = true)]
struct Echo;

impl Handler for Echo {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        Ok(input)
    }
}

fn main() {}
