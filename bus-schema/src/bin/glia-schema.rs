//! Writes the bus contract's JSON Schema to stdout, or to the path given as the first argument.

fn main() {
    let text = glia_bus_schema::schema::contract_schema_text();
    match std::env::args().nth(1) {
        Some(path) => {
            if let Err(e) = std::fs::write(&path, text) {
                eprintln!("glia-schema: cannot write {path}: {e}");
                std::process::exit(1);
            }
        }
        None => print!("{text}"),
    }
}
