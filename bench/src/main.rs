//! The benchmark runner (`cargo run -p bench --release -- all`).

fn main() {
    eprintln!("bench: no benchmark is implemented yet");
    std::process::exit(2);
}
