use std::marker::PhantomData;

use airssys_wasm_sdk::{ComponentError, Handler, Message, component};

#[component(name = "echo", version = "0.1.0", description = "Echoes")]
struct Echo<T>(PhantomData<T>);

impl<T> Handler for Echo<T> {
    fn execute(input: Message) -> Result<Message, ComponentError> {
        Ok(input)
    }
}

fn main() {}
