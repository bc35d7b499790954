use airssys_wasm_sdk::component;

#[component(name = "echo", version = "0.1.0", description = "Echoes")]
enum Echo {
    Loud,
    Quiet,
}

fn main() {}
