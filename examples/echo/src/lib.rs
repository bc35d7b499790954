//! Echoes its input: the payload and content type come back unchanged, with
//! the header `x-echoed-by: echo` added.

use airssys_wasm_sdk::{ComponentError, Handler, Message, component, log};

#[component(name = "echo", version = "0.1.0", description = "Echoes its input")]
struct Echo;

impl Handler for Echo {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        log::info(&format!("echoing {} bytes", input.payload.len()));
        Ok(Message {
            payload: input.payload,
            content_type: input.content_type,
            headers: vec![("x-echoed-by".to_owned(), "echo".to_owned())],
        })
    }
}
